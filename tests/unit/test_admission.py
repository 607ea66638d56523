"""The admission decision: places, one image per server, turns across tenants."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.admission import Candidate, pick_runs


def ordered(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.turn, c.run_id))


def test_turns_across_tenants_before_a_big_fleet_goes_twice() -> None:
    big = [Candidate(i, "big", f"b{i}", i + 1) for i in range(100)]
    small = [Candidate(1000 + i, f"t{i}", f"s{i}", 1) for i in range(3)]
    picked = pick_runs(ordered(big + small), 4, set())
    assert set(picked) == {0, 1000, 1001, 1002}


def test_one_run_per_server_and_none_on_a_busy_server() -> None:
    candidates = [
        Candidate(1, "a", "s1", 1),
        Candidate(2, "a", "s1", 2),
        Candidate(3, "a", "s2", 3),
        Candidate(4, "b", "s3", 1),
    ]
    assert pick_runs(ordered(candidates), 10, {"s3"}) == [1, 3]


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 8)), max_size=40),
    st.integers(0, 12),
    st.sets(st.integers(0, 8).map(lambda n: f"s{n}"), max_size=3),
)
def test_never_more_than_the_places_nor_two_per_server(rows, places, busy) -> None:
    candidates = []
    turns: dict[str, int] = {}
    for run_id, (tenant, server) in enumerate(rows):
        turns[tenant] = turns.get(tenant, 0) + 1
        candidates.append(Candidate(run_id, tenant, f"s{server}", turns[tenant]))
    picked = pick_runs(ordered(candidates), places, busy)
    servers = [next(c.server_id for c in candidates if c.run_id == r) for r in picked]
    assert len(picked) <= places
    assert len(servers) == len(set(servers))
    assert not set(servers) & busy
