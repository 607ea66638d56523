"""The plan following the on-day LP: inside the windows, and below what laying daily runs flat
allows."""

from __future__ import annotations

import numpy as np

from scheduler.load_profile import duration_bins
from scheduler.lower_bound import lower_bound
from scheduler.lp_guided import lower_peak, realise
from scheduler.on_day_limit import on_day_limit
from scheduler.planner import planned_load, rebalance
from tests.support.fleets import assert_slots_allowed, skewed_fleet


def test_realised_starts_lie_in_their_windows_on_whole_minutes() -> None:
    days, durations, _ = skewed_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    assert (slots >= 0).all()
    assert (slots % 60 == 0).all()
    assert_slots_allowed(days, slots)


def test_lowering_the_peak_never_raises_it_and_keeps_the_load_exact() -> None:
    days, durations, _ = skewed_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    load = planned_load(days, lengths * 60, slots)
    before = load.max()
    moves = lower_peak(load, days, lengths, slots, budget_s=5.0)
    assert moves > 0
    assert load.max() < before
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_slots_allowed(days, slots)


def test_a_crowded_weekend_is_planned_below_what_flat_daily_runs_allow() -> None:
    """Laying daily runs flat cannot get the peak below `daily_flat`; the plan that shapes the
    daily load gets under it, and stays within 5% of the bound. (On small fleets the rounding
    to whole runs costs more than the shaping gains.)"""
    days, durations, tenants = skewed_fleet(30_000)
    bound = lower_bound(days, durations, hourly=True)
    plan = rebalance(
        days, durations, tenants, np.full(days.size, -1), np.floor(bound.value), with_limit=False
    )
    assert_slots_allowed(days, plan.slot_s)
    assert plan.peak < bound.daily_flat
    assert plan.peak <= bound.value * 1.05
