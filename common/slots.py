"""Time and slot arithmetic: where a slot lies in the UTC day or week, and when it next runs.

A daily schedule's slot is seconds after 00:00 UTC, in [0, DAY_S). A weekly schedule's slot is
seconds after Monday 00:00 UTC, in [0, WEEK_S); for chosen day D it lies on D where the load
allows, otherwise in D's window, from 12:00 UTC the day before to 12:00 UTC the day after,
taken modulo the week. Days are numbered Monday=0 … Sunday=6, as `datetime.weekday()`.
"""

from __future__ import annotations

import datetime as dt

DAY_S = 86400
WEEK_S = 7 * DAY_S
# How far a weekly slot may stray from its chosen day, on each side.
SPILL_S = DAY_S // 2
WINDOW_S = DAY_S + 2 * SPILL_S


def _check_day(day_of_week: int | None) -> None:
    if day_of_week is not None and not (isinstance(day_of_week, int) and 0 <= day_of_week <= 6):
        raise ValueError(f"day_of_week must be None or 0..6, not {day_of_week!r}")


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(dt.UTC)


def period_length(day_of_week: int | None) -> int:
    """Seconds between two runs: a day for a daily schedule, a week for a weekly one."""
    _check_day(day_of_week)
    return DAY_S if day_of_week is None else WEEK_S


def window(day_of_week: int) -> tuple[int, int]:
    """(start, length) in week-seconds of the slots allowed for a weekly schedule on that day.

    The start is taken modulo the week: Monday's window starts on Sunday at 12:00 (561600).
    """
    _check_day(day_of_week)
    if day_of_week is None:
        raise ValueError("a daily schedule has no weekly window")
    return (day_of_week * DAY_S - SPILL_S) % WEEK_S, WINDOW_S


def in_window(day_of_week: int | None, slot_s: int) -> bool:
    """True when the slot is allowed for the schedule (for a daily one: inside the day)."""
    if day_of_week is None:
        return 0 <= slot_s < DAY_S
    if not 0 <= slot_s < WEEK_S:
        return False
    start, length = window(day_of_week)
    return (slot_s - start) % WEEK_S < length


def is_on_chosen_day(day_of_week: int | None, slot_s: int) -> bool:
    """True when a weekly slot lies on its chosen UTC day; a daily slot always does."""
    if day_of_week is None:
        return in_window(None, slot_s)
    _check_day(day_of_week)
    return day_of_week * DAY_S <= slot_s < (day_of_week + 1) * DAY_S


def offset_from_chosen_day(day_of_week: int, slot_s: int) -> int:
    """Seconds from 00:00 of the chosen day to the slot, in [-SPILL_S, DAY_S + SPILL_S)."""
    if not in_window(day_of_week, slot_s):
        raise ValueError(f"slot {slot_s} is outside the window of day {day_of_week}")
    offset = (slot_s - day_of_week * DAY_S) % WEEK_S
    # The window's first half-day lies before the day, which modulo the week reads as its end.
    return offset - WEEK_S if offset >= WEEK_S - SPILL_S else offset


def _period_origin(day_of_week: int | None, moment: dt.datetime) -> dt.datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if day_of_week is None:
        return midnight
    return midnight - dt.timedelta(days=midnight.weekday())


def next_run_at(day_of_week: int | None, slot_s: int, after: dt.datetime) -> dt.datetime:
    """The first occurrence of the slot strictly after `after` (tz-aware, answered in UTC)."""
    if not in_window(day_of_week, slot_s):
        raise ValueError(f"slot {slot_s} is not allowed for day_of_week={day_of_week!r}")
    after = _utc(after)
    candidate = _period_origin(day_of_week, after) + dt.timedelta(seconds=slot_s)
    if candidate <= after:
        candidate += dt.timedelta(seconds=period_length(day_of_week))
    return candidate


def last_run_at(day_of_week: int | None, slot_s: int, at: dt.datetime) -> dt.datetime:
    """The latest occurrence of the slot at or before `at` (tz-aware, answered in UTC)."""
    if not in_window(day_of_week, slot_s):
        raise ValueError(f"slot {slot_s} is not allowed for day_of_week={day_of_week!r}")
    at = _utc(at)
    candidate = _period_origin(day_of_week, at) + dt.timedelta(seconds=slot_s)
    if candidate > at:
        candidate -= dt.timedelta(seconds=period_length(day_of_week))
    return candidate


def period_of(day_of_week: int | None, slot_s: int, run_at: dt.datetime) -> dt.date:
    """The period a run at `run_at` serves; with the schedule, the key of "one image a period".

    Daily: the UTC date of `run_at`. Weekly: the date of the chosen day that this occurrence
    of the slot belongs to, so a Monday schedule run on Sunday at 18:00 serves the Monday that
    follows. A run late by less than a week still maps to the occurrence it came from.
    """
    run_at = _utc(run_at)
    if day_of_week is None:
        if not in_window(None, slot_s):
            raise ValueError(f"slot {slot_s} is not allowed for a daily schedule")
        return run_at.date()
    occurrence = last_run_at(day_of_week, slot_s, run_at)
    chosen_midnight = occurrence - dt.timedelta(seconds=offset_from_chosen_day(day_of_week, slot_s))
    return chosen_midnight.date()
