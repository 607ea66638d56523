"""A plan that follows the on-day LP's hourly starts, for fleets the day-by-day planner cannot
fit under the cap.

The LP (`on_day_limit`, asked for its lowest cap) says how many runs of each group start in each
hour, daily ones the same every day, so that the load at every fifth minute stays as low as it
can. Unlike the day-by-day planner it shapes the daily load too: it leaves room after 12:00 UTC,
where a busy weekend's longest runs, started just before its window closes, carry their work.

`realise` deals each group's runs to its hours so that every hour gets an even mix of the
group's lengths, and spreads them evenly over the hour's minutes. Rounding, and the minutes
between the LP's instants, leave some minutes higher than the LP said; `lower_peak` then moves
runs off the busiest minute, one at a time, while one can go somewhere strictly lower.
"""

from __future__ import annotations

import time

import numpy as np

from scheduler.load_profile import (
    BIN_S,
    DAILY,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    cyclic_window_max,
    daily_fold,
)
from scheduler.on_day_limit import OnDayLimit

HOUR_BINS = 60


def realise(days: np.ndarray, lengths: np.ndarray, limit: OnDayLimit, seed: int = 0) -> np.ndarray:
    """Slots (seconds) following the LP's starts per group and hour; lengths in minutes."""
    rng = np.random.default_rng(seed)
    slots = np.full(days.size, -1, dtype=np.int64)
    starts: dict[tuple[int, int], np.ndarray] = {}
    for (day, cls, _part), per_hour in limit.start_hours.items():
        starts[(day, cls)] = starts.get((day, cls), 0) + per_hour
    for (day, cls), per_hour in starts.items():
        if day == DAILY:
            members = np.flatnonzero(limit.daily_class == cls)
            per_hour = per_hour[:24]
        else:
            members = np.flatnonzero((limit.weekly_class == cls) & (days == day))
        if members.size == 0 or per_hour.sum() <= 0:
            continue
        # Whole counts per hour that add up to the group's size, rounding the running total.
        total = np.round(np.cumsum(per_hour) / per_hour.sum() * members.size).astype(np.int64)
        count = np.diff(np.concatenate(([0], total)))
        hour = np.repeat(np.arange(count.size), count)
        rank = np.arange(hour.size) - np.repeat(total - count, count)
        size = np.repeat(np.maximum(count, 1), count)
        # Deal the group's runs, shortest to longest, round the hours: each hour gets an even
        # mix of lengths, as the LP counted them.
        dealing = np.argsort((rank + rng.random(count.size)[hour]) / size, kind="stable")
        by_length = members[np.lexsort((rng.random(members.size), lengths[members]))]
        run = np.empty(members.size, dtype=np.int64)
        run[dealing] = by_length
        # Within an hour, evenly over its minutes, in an order unrelated to length.
        place = np.concatenate([rng.permutation(n) for n in count.tolist()])
        minute = hour * HOUR_BINS + ((place + rng.random(count.size)[hour]) * HOUR_BINS / size)
        slots[run] = minute.astype(np.int64) * BIN_S
    return slots


def _nearest(allowed: np.ndarray, current: int, period: int, preferred: np.ndarray) -> int:
    """Of the allowed positions, a preferred one if any, nearest the current one."""
    if preferred.any():
        allowed = allowed[preferred]
    distance = np.abs(allowed - current)
    distance = np.minimum(distance, period - distance)
    return int(allowed[np.argmin(distance)])


def _move_lower(load: np.ndarray, day: int, length: int, start: int, peak: float) -> int | None:
    """Move one run (counted in `load` from `start`) to where the load under its whole span
    stays below `peak - 1` once it is there; return its new start, or None leaving it be."""
    if day == DAILY:
        covered = (start + np.arange(length)[None, :] + DAY_BINS * np.arange(7)[:, None]).ravel()
        covered %= WEEK_BINS
        np.subtract.at(load, covered, 1.0)
        highest = cyclic_window_max(daily_fold(load), 0, DAY_BINS, min(length, DAY_BINS))
        allowed = np.flatnonzero(highest + 1 <= peak - 1 + 1e-9)
        if allowed.size == 0:
            np.add.at(load, covered, 1.0)
            return None
        new = _nearest(allowed, start, DAY_BINS, np.zeros(allowed.size, dtype=bool))
        covered = (new + np.arange(length)[None, :] + DAY_BINS * np.arange(7)[:, None]).ravel()
        np.add.at(load, covered % WEEK_BINS, 1.0)
        return new
    covered = (start + np.arange(length)) % WEEK_BINS
    load[covered] -= 1.0
    first = (day * DAY_BINS - SPILL_BINS) % WEEK_BINS
    highest = cyclic_window_max(load, first, WINDOW_BINS, length)
    allowed = np.flatnonzero(highest + 1 <= peak - 1 + 1e-9)
    if allowed.size == 0:
        load[covered] += 1.0
        return None
    on_day = (allowed >= SPILL_BINS) & (allowed < SPILL_BINS + DAY_BINS)
    local = _nearest(allowed, (start - first) % WEEK_BINS, WEEK_BINS, on_day)
    new = (first + local) % WEEK_BINS
    load[(new + np.arange(length)) % WEEK_BINS] += 1.0
    return new


def lower_peak(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    budget_s: float,
) -> int:
    """Lower the peak of a plan (slots in whole minutes, seconds; `load` its load, both
    updated) by moving runs off its busiest minute, the longest that can go first, each only
    to where the load stays strictly lower. Stops when no run on the busiest minute can move,
    or after `budget_s` seconds. Returns how many moves it made."""
    start = slots // BIN_S
    daily = days == DAILY
    moves = 0
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        busiest = int(np.argmax(load))
        peak = float(load[busiest])
        into = np.where(daily, (busiest - start) % DAY_BINS, (busiest - start) % WEEK_BINS)
        covering = np.flatnonzero(into < lengths)
        for i in covering[np.argsort(-lengths[covering], kind="stable")].tolist():
            new = _move_lower(load, int(days[i]), int(lengths[i]), int(start[i]), peak)
            if new is not None:
                start[i] = new
                moves += 1
                break
        else:
            break
    slots[:] = start * BIN_S
    return moves
