"""A plan that follows the on-day LP's starts per half-hour, for fleets the day-by-day planner
cannot fit under the cap.

The LP (`on_day_limit`, asked for a cap or its lowest one) says how many runs of each group
start in each half-hour (or each period of a finer grid), daily ones the same every day, so
that the load at every fifth minute stays under the cap. Unlike the day-by-day planner it shapes
the daily load too: it leaves room after 12:00 UTC, where a busy weekend's longest runs, started
just before its window closes, carry their work.

`realise` deals each group's runs to its periods so that every period gets an even mix of the
group's lengths, and spreads them evenly over the period's minutes, the lengths well mixed there
too. Rounding, and the minutes between the LP's instants, leave some minutes higher than the LP
said; `lower_peak` then moves runs, one at a time, off the minutes at the peak.
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
    window_first_bin,
)
from scheduler.on_day_limit import OnDayLimit

_GOLDEN = (5**0.5 - 1) / 2


def realise(days: np.ndarray, lengths: np.ndarray, limit: OnDayLimit, seed: int = 0) -> np.ndarray:
    """Slots (seconds) following the LP's starts per group and period; lengths in minutes."""
    rng = np.random.default_rng(seed)
    period_bins = limit.grid.start_min * 60 // BIN_S
    slots = np.full(days.size, -1, dtype=np.int64)
    starts: dict[tuple[int, int], np.ndarray] = {}
    for (day, cls, _part), per_period in limit.start_periods.items():
        starts[(day, cls)] = starts.get((day, cls), 0) + per_period
    for (day, cls), per_period in starts.items():
        if day == DAILY:
            members = np.flatnonzero(limit.daily_class == cls)
            per_period = per_period[: limit.grid.per_day]
        else:
            members = np.flatnonzero((limit.weekly_class == cls) & (days == day))
        if members.size == 0 or per_period.sum() <= 0:
            continue
        # Whole counts per period that add up to the group's size, rounding the running total.
        total = np.round(np.cumsum(per_period) / per_period.sum() * members.size).astype(np.int64)
        count = np.diff(np.concatenate(([0], total)))
        period = np.repeat(np.arange(count.size), count)
        rank = np.arange(period.size) - np.repeat(total - count, count)
        size = np.repeat(np.maximum(count, 1), count)
        # Deal the group's runs, shortest to longest, round the periods: each gets an even
        # mix of lengths, as the LP counted them.
        dealing = np.argsort((rank + rng.random(count.size)[period]) / size, kind="stable")
        by_length = members[np.lexsort((rng.random(members.size), lengths[members]))]
        run = np.empty(members.size, dtype=np.int64)
        run[dealing] = by_length
        # Within a period, evenly over its minutes, lengths in a golden-ratio order: every part
        # of the period gets an even mix of them, as the LP's kernel assumes. A random order
        # would leave some minutes with a run of long ones, the load there above the LP's.
        spin = (rank * _GOLDEN + rng.random(count.size)[period]) % 1.0
        order = np.lexsort((spin, period))
        place = np.empty(period.size, dtype=np.int64)
        place[order] = np.arange(period.size) - np.repeat(total - count, count)
        minute = (
            period * period_bins + (place + rng.random(count.size)[period]) * period_bins / size
        )
        slots[run] = minute.astype(np.int64) * BIN_S
    return slots


_BLOCKED = 1 << 20  # the cost of a start whose span would reach above the peak


def _window_sums(values: np.ndarray, first: int, count: int, width: int) -> np.ndarray:
    """Sum of the cyclic `values` over [s, s + width) for s = first … first + count - 1."""
    idx = np.arange(first, first + count + width - 1) % values.size
    running = np.concatenate(([0], np.cumsum(values[idx])))
    return running[width : width + count] - running[:count]


def _span(day: int, length: int, start: int) -> np.ndarray:
    """The minutes of the week a run covers (all seven days' for a daily one)."""
    repeats = DAY_BINS * np.arange(7 if day == DAILY else 1)
    return ((start + np.arange(length))[None, :] + repeats[:, None]).ravel() % WEEK_BINS


def _add(load: np.ndarray, day: int, length: int, start: int, weight: float) -> None:
    covered = _span(day, length, start)
    if length <= (DAY_BINS if day == DAILY else WEEK_BINS):
        load[covered] += weight  # no minute twice: plain indexing will do
    else:
        np.add.at(load, covered, weight)


def _move_out(
    load: np.ndarray,
    day: int,
    length: int,
    start: int,
    level: float,
    sideways: np.random.Generator | None = None,
) -> int | None:
    """Move one run (counted in `load` from `start`) to the start where it takes the fewest
    minutes above `level`, if that is fewer than where it is; return the new start, or None
    leaving it be. Never onto a minute above `level` (at the peak). Ties go to the run's chosen
    day, then to where the load under its span is lowest. With `sideways`, it may also move to a
    random start that overfills as many minutes as where it is: a step across a plateau."""
    _add(load, day, length, start, -1.0)
    if day == DAILY:
        first, count, current = 0, DAY_BINS, start % DAY_BINS
        cost = (load >= level - 1e-9).astype(np.int64) + _BLOCKED * (load > level + 1e-9)
        cost = cost.reshape(7, DAY_BINS).sum(axis=0)
        under = load.reshape(7, DAY_BINS).sum(axis=0)
        costs = _window_sums(cost, first, count, length)
    else:
        # Only the window and a run's length past it matter: the rest of the week is left out.
        first = window_first_bin(day)
        count, current = WINDOW_BINS, (start - first) % WEEK_BINS
        under = load[np.arange(first, first + count + length - 1) % WEEK_BINS]
        cost = (under >= level - 1e-9).astype(np.int64) + _BLOCKED * (under > level + 1e-9)
        costs = _window_sums(cost, 0, count, length)
    best = costs.min()
    if best < costs[current]:
        candidates = np.flatnonzero(costs == best)
    elif sideways is not None:
        candidates = np.flatnonzero(costs <= costs[current])
        candidates = candidates[candidates != current]
        if candidates.size:
            candidates = sideways.choice(candidates, 1)
    else:
        candidates = np.zeros(0, dtype=np.int64)
    if candidates.size == 0:
        _add(load, day, length, start, 1.0)
        return None
    off_day = np.zeros(candidates.size, dtype=bool)
    if day != DAILY:
        off_day = (candidates < SPILL_BINS) | (candidates >= SPILL_BINS + DAY_BINS)
        weight = _window_sums(under, 0, count, length)[candidates]
    else:
        weight = _window_sums(under, first, count, length)[candidates]
    local = int(candidates[np.lexsort((weight, off_day))[0]])
    new = (first + local) % (DAY_BINS if day == DAILY else WEEK_BINS)
    _add(load, day, length, new, 1.0)
    return new


def _overfilled(
    over: np.ndarray, start: np.ndarray, lengths: np.ndarray, daily: np.ndarray
) -> np.ndarray:
    """Per run, how many of the minutes it covers are marked in `over` (a minute twice if a run
    longer than the week covers it twice)."""
    # Enough weeks end to end that every span, from any start in the first, ends inside them.
    weeks = 2 + int(lengths.max(initial=0)) // WEEK_BINS
    running = np.concatenate(([0], np.cumsum(np.tile(over, weeks))))
    count = np.zeros(start.size, dtype=np.int64)
    for day in range(7):
        first = (start + day * DAY_BINS) % WEEK_BINS
        counted = daily if day else np.ones(start.size, dtype=bool)
        count += np.where(counted, running[first + lengths] - running[first], 0)
    return count


class _Covering:
    """Which runs cover a minute, without scanning every run: the runs sorted by their start
    when the search began, plus the few moved since."""

    def __init__(self, start: np.ndarray, lengths: np.ndarray, daily: np.ndarray) -> None:
        self.start, self.lengths, self.daily = start, lengths, daily
        self.longest = int(lengths.max()) if lengths.size else 0
        self._index()

    def _index(self) -> None:
        start, daily = self.start, self.daily
        self.original = start.copy()
        # A daily run covers a minute of any day it covers that minute of the first day.
        first = np.where(daily, start % DAY_BINS, start)
        self.order = np.argsort(first, kind="stable")
        self.sorted_first = first[self.order]
        self.moved: set[int] = set()
        self.is_moved = np.zeros(start.size, dtype=bool)

    def at(self, minute: int) -> np.ndarray:
        found = []
        for period, of_kind in ((WEEK_BINS, ~self.daily), (DAY_BINS, self.daily)):
            # Starts up to the longest run before the minute, across the period's start too.
            lowest, highest = minute % period - self.longest + 1, minute % period + 1
            for turn in range(-(-self.longest // period) + 1):
                bounds = np.clip([lowest + turn * period, highest + turn * period], 0, period)
                a, b = np.searchsorted(self.sorted_first, bounds)
                near = self.order[a:b]
                # Moved runs are found where they are now, below, not where they were.
                found.append(near[of_kind[near] & ~self.is_moved[near]])
        found.append(np.fromiter(self.moved, dtype=np.int64, count=len(self.moved)))
        runs = np.concatenate(found)
        if self.longest > DAY_BINS:  # the turns' stretches overlap: a run found twice
            runs = np.unique(runs)
        period = np.where(self.daily[runs], DAY_BINS, WEEK_BINS)
        into = (minute - self.start[runs]) % period
        return runs[into < self.lengths[runs]]

    def move(self, run: int, new: int) -> None:
        self.start[run] = new
        if new != self.original[run]:
            self.moved.add(run)
            self.is_moved[run] = True
        if len(self.moved) > 256:  # looking through the moved runs costs more than sorting
            self._index()


def lower_peak(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    budget_s: float,
    goal: float = 0.0,
    tries: int = 8,
    seed: int = 0,
) -> int:
    """Lower the peak of a plan (slots in whole minutes, seconds; `load` its load, both
    updated) by moving single runs, until it is at most `goal`, or `budget_s` seconds pass.

    Aiming one below the peak, each step takes a minute at the peak and the `tries` runs on it
    that cover most minutes at the peak; one of them moves to where it overfills fewer minutes
    than where it is, the total overflow falling with every move (a run may fill a minute to the
    brim on the way if it empties others). When none can, one moves sideways, to where it
    overfills as many, and the search goes on from there; a run that moved sideways waits a
    while before it moves sideways again. Returns how many moves it made."""
    rng = np.random.default_rng(seed)
    start = slots // BIN_S
    daily = days == DAILY
    runs = _Covering(start, lengths, daily)
    moves = 0
    resting: dict[int, int] = {}
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline and load.max() > goal + 1e-9:
        level = float(load.max()) - 1
        over = (load > level + 1e-9).astype(np.int64)
        full = np.flatnonzero(over)
        moved = False
        # Improving moves first, from a few of the peak's minutes; else a step sideways.
        for sideways in (None, rng):
            for minute in rng.choice(full, min(full.size, 4), replace=False).tolist():
                covering = runs.at(minute)
                if sideways is not None:
                    covering = covering[[resting.get(i, -1) < moves for i in covering.tolist()]]
                    rng.shuffle(covering)
                else:
                    gain = _overfilled(over, start[covering], lengths[covering], daily[covering])
                    covering = covering[np.argsort(-gain, kind="stable")]
                for i in covering[:tries].tolist():
                    new = _move_out(
                        load, int(days[i]), int(lengths[i]), int(start[i]), level, sideways
                    )
                    if new is not None:
                        runs.move(i, new)
                        moves += 1
                        if sideways is not None:
                            resting[i] = moves + 50
                        moved = True
                        break
                if moved:
                    break
            if moved:
                break
    slots[:] = start * BIN_S
    return moves
