"""Slot arithmetic: windows, next runs and the period a run serves."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.slots import (
    DAY_S,
    WEEK_S,
    in_window,
    is_on_chosen_day,
    next_run_at,
    period_of,
    window,
)

UTC = dt.UTC
moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)
days = st.one_of(st.none(), st.integers(0, 6))


def allowed_slot(day: int | None, draw_offset: int) -> int:
    if day is None:
        return draw_offset % DAY_S
    start, length = window(day)
    return (start + draw_offset % length) % WEEK_S


def test_windows_of_monday_and_sunday_wrap_the_week() -> None:
    assert window(0) == (561600, 2 * DAY_S)
    assert window(6) == (6 * DAY_S - DAY_S // 2, 2 * DAY_S)
    assert in_window(0, 561600) and in_window(0, DAY_S + DAY_S // 2 - 1)
    assert not in_window(0, DAY_S + DAY_S // 2) and not in_window(0, 561599)
    assert in_window(6, 43199) and not in_window(6, 43200)
    assert in_window(None, 0) and not in_window(None, DAY_S)


def test_on_chosen_day() -> None:
    assert is_on_chosen_day(2, 2 * DAY_S) and not is_on_chosen_day(2, 3 * DAY_S)
    assert not is_on_chosen_day(0, 561600)


@given(days, st.integers(0, 10**9), moments)
def test_next_run_is_the_first_occurrence_after(day, offset, after) -> None:
    slot = allowed_slot(day, offset)
    run = next_run_at(day, slot, after)
    period = DAY_S if day is None else WEEK_S
    assert run > after and run - dt.timedelta(seconds=period) <= after
    assert run.tzinfo is not None
    origin = dt.datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
    assert (run - origin).total_seconds() % period == slot


@given(st.integers(0, 6), st.integers(0, 10**9), moments)
def test_weekly_period_is_the_chosen_day_within_half_a_day(day, offset, after) -> None:
    slot = allowed_slot(day, offset)
    run = next_run_at(day, slot, after)
    served = period_of(day, slot, run)
    assert served.weekday() == day
    chosen_midnight = dt.datetime.combine(served, dt.time(), UTC)
    assert -DAY_S / 2 <= (run - chosen_midnight).total_seconds() < 1.5 * DAY_S
    # A run late by hours still serves the same period; the next one serves the next week.
    assert period_of(day, slot, run + dt.timedelta(hours=5)) == served
    assert period_of(day, slot, run + dt.timedelta(days=7)) == served + dt.timedelta(days=7)


def test_monday_schedule_run_on_sunday_evening_serves_monday() -> None:
    sunday_18h = dt.datetime(2024, 1, 7, 18, tzinfo=UTC)
    slot = 6 * DAY_S + 18 * 3600
    assert period_of(0, slot, sunday_18h) == dt.date(2024, 1, 8)


def test_daily_period_is_the_date() -> None:
    run = dt.datetime(2024, 3, 5, 23, 59, tzinfo=UTC)
    assert period_of(None, 23 * 3600 + 59 * 60, run) == dt.date(2024, 3, 5)


def test_rejects_naive_datetimes_and_slots_outside_the_window() -> None:
    with pytest.raises(ValueError):
        next_run_at(None, 0, dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        next_run_at(3, 0, dt.datetime(2024, 1, 1, tzinfo=UTC))
