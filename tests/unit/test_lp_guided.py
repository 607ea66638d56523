"""The plan following the on-day LP: inside the windows, and below what laying daily runs flat
allows."""

from __future__ import annotations

import numpy as np

from common.slots import in_window
from scheduler.load_profile import DAILY, duration_bins
from scheduler.lower_bound import lower_bound
from scheduler.lp_guided import lower_peak, realise
from scheduler.on_day_limit import on_day_limit
from scheduler.planner import planned_load, rebalance


def weekend_fleet(size: int, seed: int = 5):
    """30% daily, weekly ones crowded on Saturday and Sunday, two minutes to four hours."""
    rng = np.random.default_rng(seed)
    daily = rng.random(size) < 0.3
    p = np.array([0.09, 0.07, 0.07, 0.08, 0.11, 0.25, 0.33])
    days = np.where(daily, DAILY, rng.choice(7, size, p=p / p.sum())).astype(np.int8)
    durations = np.round(np.exp(rng.uniform(np.log(120), np.log(4 * 3600), size)))
    return days, durations, rng.integers(0, 50, size)


def assert_inside_windows(days: np.ndarray, slots: np.ndarray) -> None:
    for day, slot in zip(days.tolist(), slots.tolist(), strict=True):
        assert in_window(None if day == DAILY else day, slot), (day, slot)


def test_realised_starts_lie_in_their_windows_on_whole_minutes() -> None:
    days, durations, _ = weekend_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    assert (slots >= 0).all()
    assert (slots % 60 == 0).all()
    assert_inside_windows(days, slots)


def test_lowering_the_peak_never_raises_it_and_keeps_the_load_exact() -> None:
    days, durations, _ = weekend_fleet(1500)
    lengths = duration_bins(durations)
    slots = realise(days, lengths, on_day_limit(days, durations, None))
    load = planned_load(days, lengths * 60, slots)
    before = load.max()
    moves = lower_peak(load, days, lengths, slots, budget_s=5.0)
    assert moves > 0
    assert load.max() < before
    assert np.array_equal(load, planned_load(days, lengths * 60, slots))
    assert_inside_windows(days, slots)


def test_a_crowded_weekend_is_planned_below_what_flat_daily_runs_allow() -> None:
    """Laying daily runs flat cannot get the peak below `daily_flat`; the plan that shapes the
    daily load gets under it, and stays within 5% of the bound. (On small fleets the rounding
    to whole runs costs more than the shaping gains.)"""
    days, durations, tenants = weekend_fleet(30_000)
    bound = lower_bound(days, durations, hourly=True)
    plan = rebalance(
        days, durations, tenants, np.full(days.size, -1), np.floor(bound.value), with_limit=False
    )
    assert_inside_windows(days, plan.slot_s)
    assert plan.peak < bound.daily_flat
    assert plan.peak <= bound.value * 1.05
