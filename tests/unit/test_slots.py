"""Slot arithmetic: windows, next runs and the period a run serves."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.slots import (
    DAY_S,
    WEEK_S,
    in_window,
    is_on_chosen_day,
    last_run_at,
    next_run_at,
    offset_from_chosen_day,
    period_length,
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


@pytest.mark.parametrize("slot", [-1, DAY_S])
def test_a_daily_slot_outside_the_day_is_refused(slot: int) -> None:
    assert not in_window(None, slot) and not is_on_chosen_day(None, slot)
    after = dt.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not allowed"):
        next_run_at(None, slot, after)
    with pytest.raises(ValueError, match="not allowed"):
        last_run_at(None, slot, after)
    with pytest.raises(ValueError, match="not allowed for a daily schedule"):
        period_of(None, slot, after)


@pytest.mark.parametrize("slot", [-1, WEEK_S, WEEK_S + 6 * DAY_S])
@pytest.mark.parametrize("day", range(7))
def test_a_weekly_slot_outside_the_week_is_refused(day: int, slot: int) -> None:
    """Even where the slot, taken modulo the week, would fall in the day's window."""
    assert not in_window(day, slot) and not is_on_chosen_day(day, slot)
    with pytest.raises(ValueError, match="not allowed"):
        next_run_at(day, slot, dt.datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="outside the window"):
        offset_from_chosen_day(day, slot)


@pytest.mark.parametrize("day", [7, -1, 1.0, "MONDAY"])
def test_a_day_outside_monday_to_sunday_is_refused(day) -> None:
    for check in (period_length, window):
        with pytest.raises(ValueError, match="day_of_week must be None or 0..6"):
            check(day)
    with pytest.raises(ValueError, match="day_of_week must be None or 0..6"):
        in_window(day, 0)
    with pytest.raises(ValueError, match="day_of_week must be None or 0..6"):
        is_on_chosen_day(day, 0)


def test_a_daily_schedule_has_no_window_and_a_day_long_period() -> None:
    with pytest.raises(ValueError, match="^a daily schedule has no weekly window$"):
        window(None)  # type: ignore[arg-type]
    assert (period_length(None), period_length(0), period_length(6)) == (DAY_S, WEEK_S, WEEK_S)


def test_a_slot_on_the_edges_of_its_day() -> None:
    assert is_on_chosen_day(2, 2 * DAY_S) and is_on_chosen_day(2, 3 * DAY_S - 1)
    assert not is_on_chosen_day(2, 2 * DAY_S - 1)
    assert is_on_chosen_day(None, 0) and is_on_chosen_day(None, DAY_S - 1)
    assert offset_from_chosen_day(2, 2 * DAY_S - DAY_S // 2) == -DAY_S // 2
    assert offset_from_chosen_day(2, 3 * DAY_S + DAY_S // 2 - 1) == DAY_S + DAY_S // 2 - 1
    assert offset_from_chosen_day(0, WEEK_S - 1) == -1


PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))


def test_a_period_computed_from_a_time_not_in_utc_is_the_utc_one() -> None:
    # 01:00 at UTC+2 on the 6th is 23:00 UTC on the 5th; 21:00 at UTC-5 on the 5th is the 6th.
    assert period_of(None, 0, dt.datetime(2024, 3, 6, 1, tzinfo=PLUS_TWO)) == dt.date(2024, 3, 5)
    assert period_of(None, 0, dt.datetime(2024, 3, 5, 21, tzinfo=MINUS_FIVE)) == dt.date(2024, 3, 6)
    # A Monday slot at 00:30 UTC, reached at 01:30 on Monday at UTC+2 (23:30 UTC on Sunday):
    # that occurrence is a week old, so it serves the Monday before.
    sunday_late = dt.datetime(2024, 1, 8, 1, 30, tzinfo=PLUS_TWO)
    assert period_of(0, 1800, sunday_late) == dt.date(2024, 1, 1)


def test_next_and_last_runs_are_answered_in_utc_from_any_zone() -> None:
    after = dt.datetime(2024, 3, 6, 1, tzinfo=PLUS_TWO)  # 23:00 UTC on the 5th
    assert next_run_at(None, 23 * 3600 + 1800, after) == dt.datetime(2024, 3, 5, 23, 30, tzinfo=UTC)
    assert next_run_at(None, 23 * 3600 + 1800, after).utcoffset() == dt.timedelta(0)
    assert last_run_at(None, 22 * 3600, after) == dt.datetime(2024, 3, 5, 22, tzinfo=UTC)
    assert last_run_at(None, 22 * 3600, after).utcoffset() == dt.timedelta(0)


def test_next_run_is_strictly_after_and_last_run_at_or_before() -> None:
    at = dt.datetime(2024, 3, 5, 10, tzinfo=UTC)
    assert next_run_at(None, 10 * 3600, at) == at + dt.timedelta(days=1)
    assert last_run_at(None, 10 * 3600, at) == at
    assert last_run_at(None, 10 * 3600 + 1, at) == at + dt.timedelta(seconds=1, days=-1)
    assert last_run_at(2, 2 * DAY_S, at) == dt.datetime(2024, 3, 6, tzinfo=UTC) - dt.timedelta(7)


def test_naive_times_are_refused_everywhere() -> None:
    naive = dt.datetime(2024, 1, 1)
    for compute in (next_run_at, last_run_at, period_of):
        with pytest.raises(ValueError, match="^a timezone-aware datetime is required$"):
            compute(None, 0, naive)


class NoOffset(dt.tzinfo):
    """A zone that knows no offset: a time in it is as naive as one without."""

    def utcoffset(self, moment: dt.datetime | None) -> None:
        return None


def test_a_time_whose_zone_has_no_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="^a timezone-aware datetime is required$"):
        next_run_at(None, 0, dt.datetime(2024, 1, 1, tzinfo=NoOffset()))


def test_answers_are_in_utc_whatever_the_machines_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "IST-5:30")  # POSIX: 5 h 30 east of UTC
    time.tzset()
    try:
        after = dt.datetime(2024, 3, 5, 22, tzinfo=UTC)
        run = next_run_at(None, 23 * 3600, after)
        assert (run, run.utcoffset()) == (dt.datetime(2024, 3, 5, 23, tzinfo=UTC), dt.timedelta(0))
        assert period_of(None, 23 * 3600, run) == dt.date(2024, 3, 5)
    finally:
        monkeypatch.undo()
        time.tzset()
