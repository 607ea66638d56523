"""The plan following the on-day LP: inside the windows, and below what laying daily runs flat
allows."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.planning import lower_bound, on_day_share, planned_load, rebalance
from scheduler.planning.back_on_their_day import pull_onto_their_day
from scheduler.planning.context import Work
from scheduler.planning.fleet import Plan
from scheduler.planning.lp_guided import _Covering, lower_peak, raise_on_day_share, realise
from scheduler.planning.lp_plans import FINE_GRID
from scheduler.planning.on_day_limit import StartGrid, on_day_limit
from scheduler.planning.water_fill import PHASES_SEED
from scheduler.planning.week import DAY_BINS, WEEK_BINS, duration_bins
from tests.support.fleets import assert_slots_allowed, fleet_of, skewed_fleet, sunday_fleet


def test_realised_starts_lie_in_their_windows_on_whole_minutes() -> None:
    days, durations, _ = skewed_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    assert (slots >= 0).all()
    assert (slots % 60 == 0).all()
    assert_slots_allowed(days, slots)


def test_a_finer_grid_lowers_the_lowest_cap_and_its_starts_stay_in_their_windows() -> None:
    """The planner's LP where half-hours cannot meet the cap: a busy weekend's longest runs can
    start nearer its window's end."""
    days, durations, _ = skewed_fleet(5000)
    half_hours = on_day_limit(days, durations, None)
    fine = on_day_limit(days, durations, None, grid=FINE_GRID)
    assert fine.grid == FINE_GRID and fine.lowest < half_hours.lowest
    slots = realise(days, duration_bins(durations), fine)
    assert (slots >= 0).all()
    assert (slots % 60 == 0).all()
    assert_slots_allowed(days, slots)


def test_more_length_classes_lower_the_lowest_cap_where_lengths_spread_widely() -> None:
    """A class's runs start alike: with 24 classes, not 12, a day's longest runs need not start
    with its short ones."""
    days, durations, _ = sunday_fleet(5000)
    coarse = on_day_limit(days, durations, None, grid=StartGrid(30, weekly_classes=12))
    default = on_day_limit(days, durations, None)
    assert default.grid.weekly_classes == 24
    assert default.lowest < coarse.lowest - 0.5


def test_lowering_the_peak_never_raises_it_and_keeps_the_load_exact() -> None:
    days, durations, _ = skewed_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    load = planned_load(days, lengths * 60, slots)
    before = load.max()
    moves = lower_peak(load, days, lengths, slots, Work(5_000))
    assert moves > 0
    assert load.max() < before
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_slots_allowed(days, slots)


def test_a_crowded_weekend_is_planned_below_what_flat_daily_runs_allow() -> None:
    """Laying daily runs flat cannot get the peak below `daily_flat`; the plan that shapes the
    daily load gets under it, and within 2.5% of the bound. (On small fleets the rounding
    to whole runs costs more than the shaping gains.)"""
    days, durations, tenants = skewed_fleet(30_000)
    bound = lower_bound(days, durations, hourly=True)
    plan = rebalance(
        days,
        durations,
        tenants,
        np.full(days.size, -1),
        np.floor(bound.value),
        with_limit=False,
        time_limit_s=20.0,  # the half-hour LP alone, ten seconds' search: enough for 2.5%
    )
    assert_slots_allowed(days, plan.slot_s)
    assert plan.peak < bound.daily_flat
    assert plan.peak <= bound.value * 1.025


@pytest.mark.parametrize("longest", [1000, 3000])  # 3000: some longer than a day, wrapping
def test_runs_covering_a_minute_are_found_after_moves_and_across_the_week_s_end(longest) -> None:
    rng = np.random.default_rng(1)
    size = 3000
    daily = rng.random(size) < 0.3
    lengths = rng.integers(1, longest, size)
    start = np.where(daily, rng.integers(0, DAY_BINS, size), rng.integers(0, WEEK_BINS, size))
    runs = _Covering(start.copy(), lengths, daily)
    period = np.where(daily, DAY_BINS, WEEK_BINS)
    for step in range(600):  # past the reindexing after 256 moved runs
        i = int(rng.integers(size))
        runs.move(i, int(rng.integers(0, period[i])))
        if step % 3 == 0:
            minute = int(rng.choice([0, WEEK_BINS - 1, int(rng.integers(WEEK_BINS))]))
            expected = np.flatnonzero((minute - runs.start) % period < lengths)
            assert np.array_equal(np.sort(runs.at(minute)), expected)


@pytest.mark.parametrize(
    ("fleet", "size", "seed"),
    [
        (skewed_fleet, 500, 1),
        (skewed_fleet, 500, 2),
        (skewed_fleet, 1000, 3),
        (sunday_fleet, 500, 2),
    ],
)
def test_a_plan_stuck_a_run_above_the_bound_gets_down_to_it(fleet, size, seed) -> None:
    """Moving runs one below the peak, with steps sideways, left these a run above the bound
    after 5 s (and 40 s); weighing the minutes long at the peak gets them down to it."""
    days, durations, _ = fleet(size, seed)
    bound, lengths, slots, load = _lowered_to_the_bound(days, durations)
    assert load.max() == bound
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_slots_allowed(days, slots)


def _lowered_to_the_bound(days, durations):  # type: ignore[no-untyped-def]
    """(bound, lengths, slots, load): the LP's starts at its lowest cap, the peak then lowered
    towards the bound (a few thousand tries)."""
    bound = lower_bound(days, durations, hourly=True).value
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    load = planned_load(days, lengths * 60, slots)
    lower_peak(load, days, lengths, slots, Work(60_000), goal=bound)
    return bound, lengths, slots, load


def test_runs_go_back_onto_their_day_where_others_make_room_under_the_cap() -> None:
    """At the bound, moving runs back onto their day only where there is room leaves many off
    it; making room for them puts back two points more (of the three it can), under the cap."""
    days, durations, _ = skewed_fleet(1000, 3)
    bound, lengths, slots, load = _lowered_to_the_bound(days, durations)
    assert load.max() == bound
    rng = np.random.default_rng(PHASES_SEED)
    pull_onto_their_day(
        Plan(slots, load), fleet_of(days, lengths), np.arange(days.size), bound, rng
    )
    weekly = int((days != -1).sum())
    before = on_day_share(days, slots)
    wanted = round(before * weekly) + 15  # two points more
    # The room made for each run is given more tries than the planner gives it.
    gained = raise_on_day_share(
        load, days, lengths, slots, bound, Work(100_000), wanted, repair_tries=1_000
    )
    # One run put onto its day can take others with it (the repair prefers their day too), so
    # the count may pass what was wanted.
    assert gained >= 15
    assert on_day_share(days, slots) == pytest.approx(before + gained / weekly)
    assert load.max() <= bound
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_slots_allowed(days, slots)


def test_lowering_the_peak_stops_at_its_goal() -> None:
    days, durations, _ = skewed_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    load = planned_load(days, lengths * 60, slots)
    goal = load.max() - 2
    lower_peak(load, days, lengths, slots, Work(60_000), goal=goal)
    assert load.max() == goal
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))


def test_runs_longer_than_a_day_are_moved_off_the_peak_too() -> None:
    """Two-day weekly runs and day-and-a-half daily ones: spans reaching past the end of the
    week, and for daily runs onto themselves."""
    rng = np.random.default_rng(3)
    size = 300
    days = np.where(rng.random(size) < 0.3, -1, rng.integers(0, 7, size)).astype(np.int8)
    lengths = np.where(days == -1, 2160, 2880).astype(np.int64)
    minute = rng.integers(0, DAY_BINS, size)
    slots = np.where(days == -1, minute, days.astype(np.int64) * DAY_BINS + minute) * 60
    load = planned_load(days, lengths * 60, slots)
    before = load.max()
    lower_peak(load, days, lengths, slots, Work(2_000))
    assert load.max() <= before
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_slots_allowed(days, slots)
