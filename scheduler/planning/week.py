"""The UTC week at minute resolution: the in-flight load of runs at their slots, and its maxima.

A schedule with slot s and expected duration d is in flight over [s, s + d): on each of the seven
days for a daily schedule, once for a weekly one, wrapping round the end of the week. Slots the
planner gives are whole minutes, so counting a schedule in every minute its run touches gives
the exact instantaneous number in flight at each minute's start, which is where it peaks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from common.slots import DAY_S, SPILL_S, WEEK_S

BIN_S = 60
WEEK_BINS = WEEK_S // BIN_S
DAY_BINS = DAY_S // BIN_S
SPILL_BINS = SPILL_S // BIN_S
WINDOW_BINS = DAY_BINS + 2 * SPILL_BINS
DAILY = -1  # day_of_week of a daily schedule in integer arrays


def as_day_array(day_of_week: Iterable[int | None] | np.ndarray) -> np.ndarray:
    """Days as an int8 array, a daily schedule (None) as DAILY (-1)."""
    if isinstance(day_of_week, np.ndarray) and day_of_week.dtype.kind in "iu":
        return day_of_week.astype(np.int8, copy=False)
    return np.array([DAILY if d is None else int(d) for d in day_of_week], dtype=np.int8)


def window_first_bin(day_of_week: np.ndarray | int) -> np.ndarray | int:
    """The first minute of the week a weekly schedule's window allows: 12:00 the day before
    its day (Monday's: Sunday 12:00)."""
    return (day_of_week * DAY_BINS - SPILL_BINS) % WEEK_BINS


def on_their_day(days: np.ndarray, slot_s: np.ndarray) -> np.ndarray:
    """For weekly schedules' days and slots (seconds after Monday 00:00 UTC): whether each
    slot lies on its chosen day, not in the window's spill into the days around it."""
    return slot_s // DAY_S == days


def duration_bins(duration_s: np.ndarray | float) -> np.ndarray:
    """Whole minutes a run of that length touches when it starts on a minute (at least one)."""
    bins = np.ceil(np.asarray(duration_s, dtype=np.float64) / BIN_S)
    return np.clip(bins, 1, WEEK_BINS).astype(np.int64)


def span_bins(slot_s: np.ndarray, duration_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first bin, bins touched) of runs starting at arbitrary seconds; exact for whole minutes."""
    slot_s = np.asarray(slot_s, dtype=np.int64)
    start = slot_s // BIN_S
    end = np.ceil((slot_s + np.asarray(duration_s, dtype=np.float64)) / BIN_S).astype(np.int64)
    return start, np.clip(end - start, 1, WEEK_BINS)


def add_spans(
    load: np.ndarray, start: np.ndarray, length: np.ndarray | int, weight: float = 1.0
) -> None:
    """Add `weight` over [start, start + length) bins of the weekly load, wrapping the week."""
    start = np.asarray(start, dtype=np.int64) % WEEK_BINS
    if start.size == 0:
        return
    end = start + np.broadcast_to(np.asarray(length, dtype=np.int64), start.shape)
    first, reach = int(start.min()), int(end.max())
    if reach - first <= WEEK_BINS // 2:
        # Spans within a stretch of the week (one day's runs) are counted over it alone.
        diff = np.bincount(start - first, minlength=reach - first + 1).astype(np.float64)
        diff -= np.bincount(end - first, minlength=reach - first + 1)
        load[np.arange(first, reach) % WEEK_BINS] += weight * np.cumsum(diff[: reach - first])
        return
    wraps = end > WEEK_BINS
    diff = np.bincount(start, minlength=WEEK_BINS + 1).astype(np.float64)
    diff -= np.bincount(np.minimum(end, WEEK_BINS), minlength=WEEK_BINS + 1)
    if wraps.any():
        diff[0] += np.count_nonzero(wraps)
        diff -= np.bincount(end[wraps] - WEEK_BINS, minlength=WEEK_BINS + 1)
    load += weight * np.cumsum(diff[:WEEK_BINS])


def add_daily_spans(
    load: np.ndarray, time_of_day: np.ndarray, length: np.ndarray | int, weight: float = 1.0
) -> None:
    """Add `weight` over [t, t + length) bins from each time of day t on all seven days: what
    `add_spans` adds for their `daily_starts`, counted over one day."""
    start = np.asarray(time_of_day, dtype=np.int64) % DAY_BINS
    if start.size == 0:
        return
    end = start + np.broadcast_to(np.asarray(length, dtype=np.int64), start.shape)
    reach = int(end.max())
    diff = np.bincount(start, minlength=reach + 1).astype(np.float64)
    diff -= np.bincount(end, minlength=reach + 1)
    # What runs past the day's end is in flight at the same minutes of the days after.
    covered = np.zeros(-(-reach // DAY_BINS) * DAY_BINS)
    covered[:reach] = np.cumsum(diff[:reach])
    load.reshape(7, DAY_BINS)[:] += weight * covered.reshape(-1, DAY_BINS).sum(axis=0)


def daily_starts(time_of_day_bin: np.ndarray) -> np.ndarray:
    """The seven weekly start bins of daily runs (flattened, day-major per run)."""
    t = np.asarray(time_of_day_bin, dtype=np.int64)
    return (t[:, None] + DAY_BINS * np.arange(7, dtype=np.int64)[None, :]).ravel()


def add_schedules(
    load: np.ndarray,
    day_of_week: np.ndarray,
    slot_s: np.ndarray,
    duration_s: np.ndarray,
    weight: float = 1.0,
) -> None:
    """Add schedules (day DAILY for daily) at their slots to the weekly load."""
    start, length = span_bins(slot_s, duration_s)
    daily = day_of_week == DAILY
    add_spans(load, start[~daily], length[~daily], weight)
    if daily.any():
        add_spans(load, daily_starts(start[daily]), np.repeat(length[daily], 7), weight)


def sliding_max(values: np.ndarray, width: int) -> np.ndarray:
    """max(values[i:i + width]) for every i in [0, len - width], in O(len) (van Herk/Gil-Werman)."""
    n = values.size
    if width <= 1:
        return values.copy()
    blocks = -(-n // width)
    padded = np.full(blocks * width, -np.inf)
    padded[:n] = values
    grid = padded.reshape(blocks, width)
    prefix = np.maximum.accumulate(grid, axis=1).ravel()
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    count = n - width + 1
    return np.maximum(suffix[:count], prefix[width - 1 : width - 1 + count])


def cyclic_window_max(profile: np.ndarray, first: int, count: int, width: int) -> np.ndarray:
    """Max of the cyclic profile over [s, s + width) for s = first … first + count - 1."""
    width = min(width, profile.size)
    idx = np.arange(first, first + count + width - 1) % profile.size
    return sliding_max(profile[idx], width)


def daily_fold(load: np.ndarray) -> np.ndarray:
    """Per minute of the day, the highest load over the seven days: what a daily run meets."""
    return load.reshape(7, DAY_BINS).max(axis=0)


def planned_load(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    slot_s: np.ndarray | Iterable[int],
) -> np.ndarray:
    """The number in flight per minute of the week for schedules at the given slots."""
    load = np.zeros(WEEK_BINS)
    add_schedules(
        load, as_day_array(day_of_week), np.asarray(slot_s), np.asarray(duration_s, float)
    )
    return load


def on_day_share(day_of_week: np.ndarray | Iterable[int | None], slot_s: np.ndarray) -> float:
    """Share of weekly schedules whose slot lies on their chosen day (1.0 with none)."""
    days = as_day_array(day_of_week)
    slots = np.asarray(slot_s, dtype=np.int64)
    weekly = days != DAILY
    if not weekly.any():
        return 1.0
    return float(on_their_day(days[weekly], slots[weekly]).mean())
