"""Where a waiting run stands: admission's order over every waiting run, replayed on expected
durations."""

from __future__ import annotations

import datetime as dt

from scheduler.queue_forecast import Waiting, admission_order, forecast

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def run(run_id: int, tenant: str, server: str, minutes_ago: int, back_off_s: int = 0) -> Waiting:
    since = NOW - dt.timedelta(minutes=minutes_ago)
    return Waiting(run_id, tenant, server, since, NOW + dt.timedelta(seconds=back_off_s), 600.0)


def test_the_order_is_max_min_fair_then_oldest_first() -> None:
    waiting = [run(1, "a", "a1", 30), run(2, "a", "a2", 20), run(3, "b", "b1", 10)]
    # a holds two places already: b's younger run goes first.
    assert admission_order(waiting, {"a": 2}, set(), NOW) == [3, 1, 2]
    assert admission_order(waiting, {}, set(), NOW) == [1, 3, 2]


def test_a_busy_server_and_a_back_off_put_a_run_after_those_that_could_start() -> None:
    waiting = [run(1, "a", "busy", 30), run(2, "a", "a2", 20), run(3, "b", "b1", 10, 300)]
    order = admission_order(waiting, {}, {"busy"}, NOW)
    assert order[0] == 2 and set(order) == {1, 2, 3}


def test_starts_follow_the_places_as_they_free() -> None:
    waiting = [run(1, "a", "a1", 30), run(2, "b", "b1", 20), run(3, "a", "a2", 10)]
    in_flight_ends = [NOW + dt.timedelta(seconds=120)]
    seen = forecast(waiting, in_flight_ends, {"c": 1}, {"c1"}, cap=2, now=NOW)
    assert [seen[i].position for i in (1, 2, 3)] == [0, 1, 2]
    # One place free now, the other when the run in flight ends; each image 600 s.
    assert seen[1].estimated_start_at == NOW
    assert seen[2].estimated_start_at == NOW + dt.timedelta(seconds=120)
    assert seen[3].estimated_start_at == NOW + dt.timedelta(seconds=600)


def test_two_runs_of_one_server_never_overlap_in_the_forecast() -> None:
    waiting = [run(1, "a", "s", 30), run(2, "a", "s", 20)]
    seen = forecast(waiting, [], {}, set(), cap=5, now=NOW)
    assert seen[2].estimated_start_at == seen[1].estimated_start_at + dt.timedelta(seconds=600)


def test_nothing_waits_nothing_is_forecast() -> None:
    assert forecast([], [NOW], {"a": 1}, {"s"}, cap=1, now=NOW) == {}
