"""The hourly LP bound: never above what a real plan reaches, and tighter where daily runs
must stay level."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.slots import DAY_S, SPILL_S, WEEK_S
from scheduler.planning import lower_bound, planned_load, rebalance
from scheduler.planning.hourly_relaxation import (
    CLASS_RATIO,
    _system,
    length_classes,
    lowest_peak,
    relaxed_bound,
    whole_lengths_bound,
)
from scheduler.planning.week import DAILY, DAY_BINS, WEEK_BINS, duration_bins


def test_length_classes_round_down_by_at_most_the_class_ratio() -> None:
    lengths = np.arange(1, 3000)
    classes = length_classes(lengths)
    assert (classes <= lengths).all()
    assert (classes[:60] == lengths[:60]).all()
    assert (lengths / classes <= CLASS_RATIO + 1e-9).all()


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 6)),
            st.integers(60, 8 * 3600),
            st.floats(0, 1, exclude_max=True),
        ),
        min_size=1,
        max_size=30,
    )
)
@settings(max_examples=30, deadline=None)
def test_no_plan_has_an_hour_busier_on_average_than_the_bound_allows(fleet) -> None:
    """Any slots at all, each inside its window: the busiest hour's mean is at least the bound."""
    days = np.array([DAILY if d is None else d for d, _, _ in fleet], dtype=np.int8)
    durations = np.array([d for _, d, _ in fleet], dtype=float)
    where = np.array([w for _, _, w in fleet])
    weekly_slot = (days.astype(np.int64) * DAY_S - SPILL_S + where * 2 * DAY_S) % WEEK_S
    slots = np.where(days == DAILY, where * DAY_S, weekly_slot).astype(np.int64) // 60 * 60
    load = planned_load(days, durations, slots)
    busiest_hour = load.reshape(168, 60).mean(axis=1).max()
    bound = relaxed_bound(days, duration_bins(durations))
    assert bound.value <= busiest_hour + 1e-6
    assert bound.daily_flat >= bound.value - 1e-6


def test_daily_runs_laid_flat_cannot_let_the_weekend_carry_its_work_out() -> None:
    """A busy Sunday can hand its longest runs to Monday afternoon only where daily runs leave
    room there: with the daily load held level, the bound is higher."""
    rng = np.random.default_rng(3)
    days = np.concatenate((np.full(300, DAILY), np.full(300, 6))).astype(np.int8)
    durations = np.concatenate((rng.uniform(600, 4 * 3600, 300), rng.uniform(120, 4 * 3600, 300)))
    bound = lower_bound(days, durations, hourly=True)
    assert bound.hourly is not None and bound.daily_flat is not None
    assert bound.daily_flat > bound.relaxed * 1.01
    assert "hour by hour" in bound.explanation
    plan = rebalance(days, durations, np.arange(600) % 7, np.full(600, -1), 1.0)
    assert plan.peak >= np.ceil(plan.lower_bound - 1e-9)
    assert plan.lower_bound == bound.value


def test_even_hour_weights_bound_the_average_load() -> None:
    days = np.array([DAILY, 0, 6, 6], dtype=np.int8)
    lengths = np.array([90, 30, 240, 7], dtype=np.int64)
    average = (7 * 90 + 30 + 240 + 7) / WEEK_BINS
    assert whole_lengths_bound(days, lengths, np.ones(168)) == pytest.approx(average)


def test_a_weight_on_one_hour_counts_the_runs_that_cannot_miss_it() -> None:
    """Daily runs of a whole day are in flight at every minute, from any start; Sunday's runs
    of 50 hours cover Monday 12:00 to 14:00 from any start in their window (the latest is
    Monday 11:59)."""
    days = np.array([DAILY] * 3 + [6] * 4 + [2], dtype=np.int8)
    lengths = np.array([DAY_BINS] * 3 + [50 * 60] * 4 + [60], dtype=np.int64)
    monday_noon = np.zeros(168)
    monday_noon[12] = 1.0
    assert whole_lengths_bound(days, lengths, monday_noon) == pytest.approx(7)


def test_whole_lengths_raise_the_bound_the_classes_round_down() -> None:
    """Long weekend runs a little under each class's next step: the LP rounds them down by
    nearly 2%, the bound on whole lengths does not, and no plan goes below it."""
    rng = np.random.default_rng(5)
    days = np.concatenate((np.full(200, DAILY), np.full(400, 6), np.full(100, 5))).astype(np.int8)
    lengths = (length_classes(rng.integers(61, 240, 700)) * CLASS_RATIO - 1).astype(np.int64)
    durations = lengths * 60.0
    load, membership, counts = _system(days, lengths, with_daily=True)
    classes_only = lowest_peak(load, membership, counts)
    bound = relaxed_bound(days, lengths)
    assert bound.value > classes_only * 1.005
    plan = rebalance(days, durations, np.arange(700) % 9, np.full(700, -1), 1.0)
    assert plan.peak >= bound.value
    assert plan.lower_bound >= np.ceil(bound.value - 1e-9)
