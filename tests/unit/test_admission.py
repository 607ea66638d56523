"""The admission decision: max-min fair shares counted over the places held now, each
tenant's runs oldest first, one image per server, the per-tenant ceiling, no place left
empty that a waiting run could take."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.admission import Candidate, InFlight, pick_runs

T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)


def at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def fleet(tenant: str, count: int, first_minute: int = 0, first_id: int = 0) -> list[Candidate]:
    """`count` waiting runs of a tenant, one a minute from `first_minute`, a server each."""
    return [
        Candidate(first_id + i, tenant, f"{tenant}-{i}", at(first_minute + i)) for i in range(count)
    ]


def tenants_of(picked: list[int], candidates: list[Candidate]) -> list[str]:
    by_id = {c.run_id: c for c in candidates}
    return [by_id[run_id].tenant_id for run_id in picked]


def test_the_place_goes_to_the_tenant_holding_fewest_not_to_the_oldest_run() -> None:
    # A's runs are older, but A holds three places already and B none.
    waiting = fleet("a", 5) + fleet("b", 1, first_minute=30, first_id=100)
    assert pick_runs(waiting, 1, {"a": 3}, set()) == [100]


def test_shares_are_levelled_before_any_tenant_goes_again() -> None:
    waiting = fleet("a", 10) + fleet("b", 10, first_id=100) + fleet("c", 10, first_id=200)
    picked = pick_runs(waiting, 6, {"a": 2, "b": 1}, set())
    # c catches up to 2 first; then one each, the oldest next run first (a's, by id).
    assert tenants_of(picked, waiting) == ["c", "b", "c", "a", "b", "c"]
    assert Counter(tenants_of(picked, waiting)) + Counter({"a": 2, "b": 1}) == Counter(
        {"a": 3, "b": 3, "c": 3}
    )


def test_ties_go_to_the_tenant_whose_next_run_is_oldest() -> None:
    waiting = fleet("late", 3, first_minute=10, first_id=0) + fleet("early", 3, first_id=50)
    assert tenants_of(pick_runs(waiting, 2, {}, set()), waiting) == ["early", "late"]


def test_a_tenants_own_runs_go_oldest_first() -> None:
    waiting = [
        Candidate(3, "a", "s3", at(2)),
        Candidate(1, "a", "s1", at(5)),
        Candidate(2, "a", "s2", at(2)),
    ]
    assert pick_runs(waiting, 3, {}, set()) == [2, 3, 1]


def test_one_run_per_server_and_none_on_a_busy_server() -> None:
    waiting = [
        Candidate(1, "a", "s1", at(0)),
        Candidate(2, "a", "s1", at(1)),
        Candidate(3, "a", "s2", at(2)),
        Candidate(4, "b", "s3", at(0)),
    ]
    assert pick_runs(waiting, 10, {"b": 1}, {"s3"}) == [1, 3]


def test_the_ceiling_holds_and_the_places_left_go_to_others() -> None:
    waiting = fleet("a", 10) + fleet("b", 1, first_id=100)
    picked = pick_runs(waiting, 8, {"a": 1}, set(), tenant_max=3)
    assert Counter(tenants_of(picked, waiting)) == {"a": 2, "b": 1}
    assert pick_runs(waiting, 8, {"a": 4}, set(), tenant_max=3) == [100]


def test_in_flight_counts_places_per_tenant_and_busy_servers() -> None:
    taken = InFlight.of([("a", "s1"), ("a", "s2"), ("b", "s3")])
    assert (taken.total, dict(taken.held), set(taken.busy_servers)) == (
        3,
        {"a": 2, "b": 1},
        {"s1", "s2", "s3"},
    )


# -- properties -----------------------------------------------------------------------------

TENANTS = "abcd"
waiting_runs = st.lists(
    st.tuples(st.sampled_from(TENANTS), st.integers(0, 9), st.integers(0, 20)), max_size=50
)
held_places = st.dictionaries(st.sampled_from(TENANTS), st.integers(0, 5))
busy = st.sets(st.tuples(st.sampled_from(TENANTS), st.integers(0, 9)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(waiting_runs, st.integers(0, 15), held_places, busy, st.integers(0, 4))
def test_fair_shares_within_the_places_and_the_rules(rows, places, held, busy_pairs, ceiling):
    candidates = [
        Candidate(run_id, tenant, f"{tenant}-{server}", at(minute))
        for run_id, (tenant, server, minute) in enumerate(rows)
    ]
    busy_servers = {f"{tenant}-{server}" for tenant, server in busy_pairs}
    picked = pick_runs(candidates, places, held, busy_servers, tenant_max=ceiling)

    by_id = {c.run_id: c for c in candidates}
    servers = [by_id[r].server_id for r in picked]
    given_now = Counter(by_id[r].tenant_id for r in picked)
    final = Counter(held) + given_now
    taken = busy_servers | set(servers)

    def may_take_more(tenant: str) -> bool:
        left = [c for c in candidates if c.tenant_id == tenant and c.run_id not in picked]
        under = not ceiling or final[tenant] < ceiling
        return under and any(c.server_id not in taken for c in left)

    assert len(picked) <= places
    assert len(servers) == len(set(servers)), "two images on one server"
    assert not set(servers) & busy_servers, "an image on a busy server"
    if ceiling:
        assert all(final[t] <= max(ceiling, held.get(t, 0)) for t in given_now)
        assert all(held.get(t, 0) < ceiling for t in given_now)
    if len(picked) < places:
        assert not any(may_take_more(t) for t in TENANTS), "a place left empty"
    # Max-min: a tenant that could take more holds at most one fewer than any tenant given
    # a place here.
    for tenant in filter(may_take_more, TENANTS):
        for other in given_now:
            assert final[tenant] >= final[other] - 1, (tenant, other, final)
    # Each tenant's runs oldest first: an older run passed over was on a taken server.
    for run_id in picked:
        run = by_id[run_id]
        older = [
            c
            for c in candidates
            if c.tenant_id == run.tenant_id
            and (c.scheduled_for, c.run_id) < (run.scheduled_for, run.run_id)
            and c.run_id not in picked
        ]
        assert all(c.server_id in taken for c in older)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=2, max_size=5),
    st.integers(1, 8),
    st.randoms(use_true_random=False),
)
def test_while_tenants_wait_each_holds_an_equal_share_across_ticks(sizes, cap, rnd) -> None:
    """Tick after tick, runs finishing at random: every tenant still waiting holds as many
    places as every other, give or take one. The first tenant's runs are the oldest."""
    waiting = []
    for index, size in enumerate(sizes):
        waiting += fleet(f"t{index}", size, first_minute=index, first_id=index * 1000)
    tenant_of = {c.run_id: c.tenant_id for c in waiting}
    running: list[int] = []
    while waiting or running:
        taken = InFlight.of((tenant_of[r], f"server-of-{r}") for r in running)
        admitted = pick_runs(waiting, cap - taken.total, taken.held, taken.busy_servers)
        running += admitted
        waiting = [c for c in waiting if c.run_id not in admitted]
        assert len(running) <= cap
        held = Counter(tenant_of[r] for r in running)
        still_waiting = {c.tenant_id for c in waiting}
        if still_waiting:
            assert len(running) == cap
            shares = [held[t] for t in still_waiting]
            assert max(shares) - min(shares) <= 1, (held, still_waiting)
        for run_id in rnd.sample(running, rnd.randint(1, len(running))):
            running.remove(run_id)
