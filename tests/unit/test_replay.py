"""Replaying a plan: start delays under the cap, in admission's order, and the headroom."""

from __future__ import annotations

import datetime as dt
import heapq

import numpy as np
import pytest

from scheduler.admission import Candidate, pick_runs
from scheduler.planning import DAILY
from scheduler.replay import Runs, delays, headroom, random_hour_slots, replay, runs_of

EPOCH = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def reference_starts(runs: Runs, cap: int, durations: np.ndarray) -> np.ndarray:
    """The same replay the slow way: at every moment something happens, the waiting runs are
    handed to admission's own `pick_runs` for the free places."""
    due, count = runs.due_s.tolist(), runs.due_s.size
    start = np.full(count, np.nan)
    ends: list[tuple[float, int]] = []
    waiting: list[int] = []
    after = 0
    while after < count or waiting:
        now = min(due[after] if after < count else np.inf, ends[0][0] if ends else np.inf)
        while ends and ends[0][0] <= now:
            heapq.heappop(ends)
        while after < count and due[after] <= now:
            waiting.append(after)
            after += 1
        flying = [run for _, run in ends]
        held: dict[str, int] = {}
        for run in flying:
            held[str(runs.tenant[run])] = held.get(str(runs.tenant[run]), 0) + 1
        candidates = [
            Candidate(
                run, str(runs.tenant[run]), str(runs.server[run]), EPOCH + dt.timedelta(0, due[run])
            )
            for run in waiting
        ]
        busy = {str(runs.server[run]) for run in flying}
        for run in pick_runs(candidates, cap - len(flying), held, busy):
            start[run] = now
            heapq.heappush(ends, (now + durations[run], run))
            waiting.remove(run)
    return start


@pytest.mark.parametrize("seed", range(4))
def test_the_replay_hands_out_places_as_admission_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 60
    days = np.where(rng.random(size) < 0.5, DAILY, rng.integers(0, 7, size)).astype(np.int8)
    # Crowded on a few minutes, so that runs queue, several tenants at once.
    slots = np.where(days == DAILY, 0, days.astype(np.int64) * 86400) + rng.choice(
        [3600, 3660, 7200], size
    )
    expected = rng.uniform(600, 5400, size).round()
    runs = runs_of(days, expected, rng.integers(0, 5, size), slots, weeks=1, noise=0.5)
    late = replay(runs, 4)
    durations = np.maximum(runs.expected_s * runs.noise, 1e-3)
    wanted = reference_starts(runs, 4, durations) - runs.due_s
    assert (late > 0).sum() > size  # runs did queue
    assert np.allclose(late, wanted)


def test_a_plan_under_the_cap_starts_every_run_on_time_without_noise() -> None:
    days = np.full(48, DAILY, dtype=np.int8)
    slots = np.arange(48) * 1800  # one every half hour, each an hour long: two in flight
    runs = runs_of(days, np.full(48, 3600.0), np.arange(48), slots, noise=0.0)
    assert delays(runs, 2).max_s == 0.0
    late = delays(runs, 1)
    assert late.p50_s > 0 and late.late_share > 0.5  # half the places: the queue only grows


def test_the_headroom_is_the_slowdown_the_cap_can_carry() -> None:
    """Two in flight at every moment under a cap of four: twice as slow still fits, more
    queues without end."""
    days = np.full(48, DAILY, dtype=np.int8)
    runs = runs_of(days, np.full(48, 3600.0), np.arange(48), np.arange(48) * 1800, noise=0.0)
    assert headroom(runs, 4) == pytest.approx(2.0, rel=0.03)


def test_the_random_hour_plan_keeps_weekly_runs_on_their_day() -> None:
    days = np.array([DAILY, 0, 6, 3] * 50, dtype=np.int8)
    slots = random_hour_slots(days, seed=3)
    weekly = days != DAILY
    assert (slots[weekly] // 86400 == days[weekly]).all()
    assert (slots[~weekly] < 86400).all() and (slots % 60 == 0).all()
    assert np.array_equal(slots, random_hour_slots(days, seed=3))
