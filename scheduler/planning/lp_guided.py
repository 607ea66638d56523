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
said; `lower_peak` then moves runs, one at a time, off the minutes at the peak. Once under the
cap, `raise_on_day_share` puts runs the plan left off their day back onto it, making room.
"""

from __future__ import annotations

import numpy as np

from scheduler.planning.context import Work
from scheduler.planning.on_day_limit import OnDayLimit
from scheduler.planning.week import (
    BIN_S,
    DAILY,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    on_their_day,
    window_first_bin,
)

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


# Less than any minute weighs: a run leaves its day only to fill fewer minutes above the level.
OFF_DAY_COST = 0.5
# While making room for a run put back on its day: runs on their day stay on it.
_STAY_ON_DAY_COST = float(1 << 19)
#: Tries to make room for one run put back on its day: a few moves, when there is a way.
REPAIR_TRIES = 250
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
    weight: np.ndarray,
    day: int,
    length: int,
    start: int,
    level: float,
    rng: np.random.Generator,
    off_day_cost: float = OFF_DAY_COST,
) -> int | None:
    """Move one run (counted in `load` from `start`) to the start where the minutes it would
    fill above `level` weigh least, if they weigh less than where it is; return the new start,
    or None leaving it be. Never onto a minute already above `level` (at the peak). A start off
    a weekly run's chosen day costs OFF_DAY_COST more: ties go to its day, and a run off it
    moves back where that fills no more minutes. Ties left go to chance."""
    _add(load, day, length, start, -1.0)
    if day == DAILY:
        first, count, current = 0, DAY_BINS, start % DAY_BINS
        cost = weight * (load >= level - 1e-9) + _BLOCKED * (load > level + 1e-9)
        costs = _window_sums(cost.reshape(7, DAY_BINS).sum(axis=0), first, count, length)
    else:
        # Only the window and a run's length past it matter: the rest of the week is left out.
        first = window_first_bin(day)
        count, current = WINDOW_BINS, (start - first) % WEEK_BINS
        covered = np.arange(first, first + count + length - 1) % WEEK_BINS
        under = load[covered]
        cost = weight[covered] * (under >= level - 1e-9) + _BLOCKED * (under > level + 1e-9)
        costs = _window_sums(cost, 0, count, length)
        costs[:SPILL_BINS] += off_day_cost
        costs[SPILL_BINS + DAY_BINS :] += off_day_cost
    best = costs.min()
    if best >= costs[current] - 1e-9:
        _add(load, day, length, start, 1.0)
        return None
    local = int(rng.choice(np.flatnonzero(costs <= best + 1e-9)))
    new = (first + local) % (DAY_BINS if day == DAILY else WEEK_BINS)
    _add(load, day, length, new, 1.0)
    return new


class _Covering:
    """Which runs cover a minute, without scanning every run: the weekly runs and the daily
    ones, each sorted by their start when the search began, plus the few moved since."""

    def __init__(self, start: np.ndarray, lengths: np.ndarray, daily: np.ndarray) -> None:
        self.start, self.lengths, self.daily = start, lengths, daily
        self.longest = int(lengths.max()) if lengths.size else 0
        self.kinds = ((WEEK_BINS, np.flatnonzero(~daily)), (DAY_BINS, np.flatnonzero(daily)))
        self.position = np.zeros(start.size, dtype=np.int64)
        self._index()

    def _index(self) -> None:
        # Per kind, its runs' starts, lengths and whether they moved, in the order of their
        # starts: a minute's candidates are then one slice of each, read without gathering.
        self.original = self.start.copy()
        self.sorted: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for period, members in self.kinds:
            first = self.start[members] % period
            by_start = np.argsort(first, kind="stable")
            order = members[by_start]
            self.position[order] = np.arange(order.size)
            moved = np.zeros(order.size, dtype=bool)
            self.sorted.append((period, order, first[by_start], self.lengths[order], moved))
        # Run indices: a set of ints iterates in the same order in every process.
        self.moved: set[int] = set()

    def at(self, minute: int) -> np.ndarray:
        found = []
        for period, order, first, lengths, moved in self.sorted:
            # Starts up to the longest run before the minute, across the period's start too.
            lowest, highest = minute % period - self.longest + 1, minute % period + 1
            for turn in range(-(-self.longest // period) + 1):
                bounds = np.clip([lowest + turn * period, highest + turn * period], 0, period)
                a, b = np.searchsorted(first, bounds)
                # Moved runs are found where they are now, below, not where they were.
                covers = ((minute - first[a:b]) % period < lengths[a:b]) & ~moved[a:b]
                found.append(order[a:b][covers])
        if self.moved:
            runs = np.fromiter(self.moved, dtype=np.int64, count=len(self.moved))
            period = np.where(self.daily[runs], DAY_BINS, WEEK_BINS)
            found.append(runs[(minute - self.start[runs]) % period < self.lengths[runs]])
        runs = np.concatenate(found)
        if self.longest > DAY_BINS:  # the turns' stretches overlap: a run found twice
            runs = np.unique(runs)
        return runs

    def move(self, run: int, new: int) -> None:
        self.start[run] = new
        if new != self.original[run]:
            self.moved.add(run)
            kind = 1 if self.daily[run] else 0
            self.sorted[kind][4][self.position[run]] = True
        if len(self.moved) > 256:  # looking through the moved runs costs more than sorting
            self._index()


def lower_peak(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    work: Work,
    goal: float = 0.0,
    tries: int = 8,
    seed: int = 0,
    off_day_cost: float = OFF_DAY_COST,
    breakout: bool = True,
) -> int:
    """Lower the peak of a plan (slots in whole minutes, seconds; `load` its load, both
    updated) by moving single runs, until it is at most `goal`, or `work` is done (each run
    weighed for a move spends a try).

    Aiming one below the peak, each step takes a few minutes at the peak and up to `tries` runs
    on each, in random order; the first that can moves to where the minutes it would fill to the
    peak weigh less than where it is. Every minute weighs one at first; when no run can move,
    the minutes at the peak weigh one more (the breakout method): a plan stuck with a few
    minutes at the peak, where every move would only put the peak elsewhere, is made to trade
    them for minutes that have been at the peak less, instead of circling the same minutes.
    Without `breakout`, the search ends there instead. Returns how many moves it made."""
    rng = np.random.default_rng(seed)
    start = slots // BIN_S
    runs = _Covering(start, lengths, days == DAILY)
    weight = np.ones(load.size)
    moves = 0
    while not work.done and load.max() > goal + 1e-9:
        level = float(load.max()) - 1
        full = np.flatnonzero(load > level + 1e-9)
        moved = False
        for minute in rng.choice(full, min(full.size, 4), replace=False).tolist():
            covering = runs.at(minute)
            rng.shuffle(covering)
            for i in covering[:tries].tolist():
                work.spend()
                new = _move_out(
                    load,
                    weight,
                    int(days[i]),
                    int(lengths[i]),
                    int(start[i]),
                    level,
                    rng,
                    off_day_cost,
                )
                if new is not None:
                    runs.move(i, new)
                    moves += 1
                    moved = True
                    break
            if moved:
                break
        if not moved:
            if not breakout:
                break
            weight[full] += 1
            work.spend()  # a step that moved nothing still counts, should no run cover
    slots[:] = start * BIN_S
    return moves


def raise_on_day_share(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    target: float,
    work: Work,
    wanted: int | None = None,
    repair_tries: int = REPAIR_TRIES,
    seed: int = 0,
) -> int:
    """Put weekly runs left off their chosen day back onto it, making room by moving others,
    the load kept at most `target` (a plan under it; `load` and `slots` updated); passes over
    them go on while one gains, until `work` is done or `wanted` are on their day. Returns how
    many more are on their day.

    Each run off its day, shortest first (it needs the least room, and counts as one as a long
    one does), goes where on its day it fills the fewest minutes above the target (a try);
    `lower_peak` then has `repair_tries` tries to get the load back under it, moving runs on
    their day only within it. If it cannot, all is put back as it was. The plans this follows
    keep the load under the cap first, and near the bound their share falls short of the LP's."""
    rng = np.random.default_rng(seed)
    weekly = np.flatnonzero(days != DAILY)
    on_day = on_their_day(days[weekly], slots[weekly])
    wanted = weekly.size if wanted is None else wanted
    ones = np.ones(load.size)
    gained = attempts = 0
    progress = True
    while progress and not work.done and on_day.sum() < wanted:
        progress = False
        off = weekly[~on_day]
        for i in off[np.lexsort((rng.random(off.size), lengths[off]))].tolist():
            if work.done or on_day.sum() >= wanted:
                break
            was_load, was_slots = load.copy(), slots.copy()
            # Onto its day where it fills the fewest minutes above the target: every start
            # there costs less than one off it.
            work.spend()
            start = _move_out(
                load,
                ones,
                int(days[i]),
                int(lengths[i]),
                int(slots[i]) // BIN_S,
                target,
                rng,
                _STAY_ON_DAY_COST,
            )
            if start is None:
                continue
            slots[i] = start * BIN_S
            attempts += 1
            if load.max() > target + 1e-9:
                repair = work.share(repair_tries)
                lower_peak(
                    load,
                    days,
                    lengths,
                    slots,
                    repair,
                    target,
                    seed=attempts,
                    off_day_cost=_STAY_ON_DAY_COST,
                )
                work.spend(repair.used)
            now_on = on_their_day(days[weekly], slots[weekly])
            if load.max() <= target + 1e-9 and now_on.sum() > on_day.sum():
                gained += int(now_on.sum() - on_day.sum())
                on_day = now_on
                progress = True
            else:
                load[:] = was_load
                slots[:] = was_slots
    return gained
