"""The third aim: the load as low and as level as the cap and the chosen days allow.

A plan under the cap may still pack the load against it: the day-by-day plan gives each run the
latest start that fits, and the LP's plans follow starts that meet the cap, not the lowest load.
Images that run long, retries and run-now requests then find no room. Here runs placed anew are
taken out a group at a time (one day and one length; daily runs by length), longest first, and
filled back in at the lowest load their kind allows: a run on its chosen day stays on it, a
daily one keeps one time for every day. A group's new places are kept only if they leave the
load more level (a lower sum of squares) without raising its peak. Kept slots do not move, so a
rebalance of a levelled plan changes nothing.
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist

import numpy as np

from scheduler.planning.context import levelling_runs
from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.water_fill import PlacementMode, fill, groups, spread_by_tenant
from scheduler.planning.week import (
    BIN_S,
    DAILY,
    DAY_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    add_spans,
    daily_starts,
    on_their_day,
    window_first_bin,
)

OFF_DAY = PlacementMode.LEVEL_OFF_DAY
#: How much lower the share of weekly schedules on their day may be made to give the busiest
#: days room: this much below what the plan keeps, never more than ROOM_BELOW_LP below the LP's
#: most, and only with a cap at least ROOM_FROM times the bound: nearer the bound the days
#: around the busiest have no room to give.
ROOM_SHARE = 0.01
ROOM_BELOW_LP = 0.0095
ROOM_FROM = 1.2


def level_load(
    plan: Plan,
    fleet: Fleet,
    movable: np.ndarray,
    limit: float,
    rng: np.random.Generator,
    deadline: float = math.inf,
) -> int:
    """Re-fill the `movable` runs at the lowest load, never above `limit` nor the plan's own
    peak, keeping on their day those that are; `plan` is updated. Every group is tried once,
    longest first, until `levelling_runs` have been; `deadline` (monotonic), the
    rebalance's safety limit, stops it sooner. Returns the groups moved."""
    days, lengths = fleet.days, fleet.lengths
    weekly = movable[days[movable] != DAILY]
    on_day = weekly[on_their_day(days[weekly], plan.slots[weekly])]
    daily = movable[days[movable] == DAILY]
    kinds = np.concatenate((on_day, daily))
    # Longest first; a day's groups together. Daily runs count as day 7.
    key = -lengths[kinds] * 8 + np.where(days[kinds] == DAILY, 7, days[kinds])
    ceiling = min(limit, plan.peak)
    moved = 0
    left = levelling_runs(fleet.size)
    for members in groups(kinds, key):
        if time.monotonic() >= deadline or left < members.size:
            break
        left -= members.size
        members = spread_by_tenant(members, fleet.tenants)
        day = int(days[members[0]])
        mode = PlacementMode.DAILY if day == DAILY else PlacementMode.LEVEL_ON_DAY
        moved += _refill(plan, day, int(lengths[members[0]]), members, ceiling, rng, mode)
    return moved


def room_on_busy_days(
    plan: Plan,
    fleet: Fleet,
    movable: np.ndarray,
    leave: int,
    ceiling: float,
    rng: np.random.Generator,
) -> int:
    """Move up to `leave` weekly runs placed anew off their day, from the busiest day (by its
    mean load) at each step, the longest first, to the lowest load in the rest of their window,
    never above `ceiling`; a move is kept only where the load comes out more level. A busy day
    can keep its runs on it only by filling the cap all day, where any image that runs long
    makes the next ones wait; its longest runs moved to the quiet hours beside it give it room
    at the cost of a few runs off their day. Returns how many moved."""
    days, lengths = fleet.days, fleet.lengths
    weekly = movable[days[movable] != DAILY]
    candidates = weekly[on_their_day(days[weekly], plan.slots[weekly])]
    candidates = candidates[np.lexsort((candidates, -lengths[candidates]))]
    done = np.zeros(7, dtype=bool)
    left = leave
    while left > 0 and not done.all():
        mean = plan.load.reshape(7, -1).mean(axis=1)
        day = int(np.argmax(np.where(done, -np.inf, mean)))
        of_day = candidates[days[candidates] == day]
        if of_day.size == 0:
            done[day] = True
            continue
        group = of_day[lengths[of_day] == lengths[of_day[0]]][:left]
        if not _refill(plan, day, int(lengths[group[0]]), group, ceiling, rng, OFF_DAY):
            done[day] = True
            continue
        candidates = np.setdiff1d(candidates, group, assume_unique=True)
        candidates = candidates[np.lexsort((candidates, -lengths[candidates]))]
        left -= group.size
    return leave - left


def _refill(
    plan: Plan,
    day: int,
    length: int,
    members: np.ndarray,
    ceiling: float,
    rng: np.random.Generator,
    mode: PlacementMode,
) -> int:
    """Take one group out and fill it back in at the lowest load `mode` allows; keep that if
    every run fits under `ceiling` and the load is more level. Returns 1 if kept."""
    load, slots = plan.load, plan.slots
    before = load.copy()
    old = slots[members] // BIN_S
    starts = daily_starts(old) if day == DAILY else old
    add_spans(load, starts, length, -1.0)
    got = fill(load, day, length, members.size, mode, ceiling, rng)
    squares = float(np.square(load).sum())
    if got.size < members.size or squares >= float(np.square(before).sum()) - 1e-6:
        load[:] = before
        return 0
    slots[members] = np.sort(got)
    return 1


#: How sharply a minute's weight rises towards the ceiling, in multiples of the ceiling's square
#: root: the count in flight of images with noisy durations strays from the plan by about that
#: much, so minutes within a few of those below the cap are where images come to wait.
SOFTNESS = 0.5
#: Passes `smooth_load` makes over the runs it may move, work allowing (`smoothing_tries`).
SMOOTHING_PASSES = 4
#: The log-sd assumed of how far an image's duration strays from its expectation (lognormal,
#: mean one): a run weighs on the minutes after its expected end too, so that runs do not all
#: end on the minute where others all start.
DURATION_SPREAD = 0.5
#: The steps of a run's weight after its start: 1 until its duration at the first quantile of
#: the spread, then 3/4, 1/2 and 1/4 until the next ones, then nothing; about the chance that it
#: is still in flight.
_TAIL = ((0.125, 1.0), (0.375, 0.75), (0.625, 0.5), (0.875, 0.25))


def _tail_steps(length: int) -> list[tuple[int, int, float]]:
    """(offset, width, weight) steps in bins of a run of `length` bins: how likely it is still
    in flight that long after it starts, its duration lognormal around `length`."""
    sigma = DURATION_SPREAD
    steps, offset = [], 0
    for quantile, weight in _TAIL:
        z = NormalDist().inv_cdf(quantile)
        end = max(offset + (0 if steps else 1), round(length * math.exp(sigma * z - sigma**2 / 2)))
        end = min(end, WEEK_BINS)
        if end > offset:
            steps.append((offset, end - offset, weight))
        offset = end
    return steps


def smooth_load(
    plan: Plan,
    fleet: Fleet,
    movable: np.ndarray,
    ceiling: float,
    rng: np.random.Generator,
    tries: int,
) -> int:
    """Move the `movable` runs one at a time, longest first, each to the start its kind allows
    where it weighs least: a minute weighs exp((load - ceiling) / scale), counted once for the
    load as planned and once for the load runs can expect (each weighed past its expected end,
    `DURATION_SPREAD`). A run on its day stays on it, a daily run keeps one time for every day;
    the planned load never goes above `ceiling`. Up to SMOOTHING_PASSES passes while `tries`
    (runs weighed) last; `plan` is updated. Returns how many moves were made."""
    # A kept slot off the minute grid would not fit the whole-minute spans moved here.
    movable = movable[plan.slots[movable] % BIN_S == 0]
    order = movable[np.lexsort((movable, -fleet.lengths[movable]))][:tries]
    costs = _Costs(plan, fleet, ceiling, SOFTNESS * math.sqrt(max(ceiling, 1.0)), rng)
    passes = min(SMOOTHING_PASSES, tries // max(order.size, 1))
    return sum(costs.move(i) for _ in range(passes) for i in order.tolist())


class _Costs:
    """The plan's load weighed minute by minute, exp((load - ceiling) / scale), twice: as planned,
    and as runs can expect it (each weighed past its expected end); single runs moved to where
    they weigh least. A start that would take the planned load above the ceiling is never
    taken."""

    def __init__(
        self, plan: Plan, fleet: Fleet, ceiling: float, scale: float, rng: np.random.Generator
    ) -> None:
        self.load, self.slots, self.rng = plan.load, plan.slots, rng
        self.days, self.lengths = fleet.days, fleet.lengths
        self.ceiling, self.scale = ceiling, scale
        self.steps: dict[int, list[tuple[int, int, float]]] = {}
        self.shapes: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = {}
        self.expected = np.zeros(WEEK_BINS)
        starts = plan.slots // BIN_S
        daily = fleet.days == DAILY
        for length in np.unique(fleet.lengths).tolist():
            of = fleet.lengths == length
            first = np.concatenate((starts[of & ~daily], daily_starts(starts[of & daily])))
            for offset, width, weight in self._steps(length):
                add_spans(self.expected, first + offset, width, weight)
        self.planned_weight = self._weigh(self.load)
        self.expected_weight = self._weigh(self.expected)

    def _weigh(self, load: np.ndarray) -> np.ndarray:
        return np.exp((load - self.ceiling) / self.scale)

    def _steps(self, length: int) -> list[tuple[int, int, float]]:
        steps = self.steps.get(length)
        if steps is None:
            steps = self.steps[length] = _tail_steps(length)
        return steps

    def _shape(self, length: int, daily: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(planned bins, expected bins, their weights, whether a bin comes more than once) of a
        run of `length` from its start; a daily run's for the seven days."""
        key = (length, daily)
        shape = self.shapes.get(key)
        if shape is None:
            planned = np.arange(length)
            expected = np.concatenate([o + np.arange(w) for o, w, _ in self._steps(length)])
            weights = np.concatenate([np.full(w, h) for _, w, h in self._steps(length)])
            if daily:
                days = DAY_BINS * np.arange(7)[:, None]
                planned = (days + planned[None, :]).ravel()
                expected = (days + expected[None, :]).ravel()
                weights = np.tile(weights, 7)
            repeats = any(
                np.unique(bins % WEEK_BINS).size < bins.size for bins in (planned, expected)
            )
            shape = self.shapes[key] = (planned, expected, weights, repeats)
        return shape

    def _add(self, start: int, length: int, sign: float, daily: bool = False) -> None:
        """Add (sign 1) or take out (-1) a run starting at bin `start` (a daily run's time of
        day, every day)."""
        planned, expected, weights, repeats = self._shape(length, daily)
        add = np.add.at if repeats else _add_once
        at = (start + planned) % WEEK_BINS
        add(self.load, at, sign)
        self.planned_weight[at] = self._weigh(self.load[at])
        at = (start + expected) % WEEK_BINS
        add(self.expected, at, sign * weights)
        self.expected_weight[at] = self._weigh(self.expected[at])

    def _cheapest(self, cost: np.ndarray) -> int:
        """The cheapest start, one drawn among those as cheap: on a level stretch the first
        would gather every run moved there onto one minute."""
        least = float(cost.min())
        ties = np.flatnonzero(cost <= least * (1 + 1e-9))
        return int(ties[0]) if ties.size == 1 else int(ties[self.rng.integers(ties.size)])

    def _costs(
        self, planned: np.ndarray, expected: np.ndarray, top: np.ndarray, count: int, length: int
    ) -> np.ndarray:
        """Per start s < count: the weight a run of `length` adds from s on (`planned` and
        `expected` weights per bin from the first start), inf where the planned load `top` has
        no room for it."""
        summed = np.concatenate(([0.0], np.cumsum(planned)))
        cost = summed[length : length + count] - summed[:count]
        summed = np.concatenate(([0.0], np.cumsum(expected)))
        for offset, width, weight in self._steps(length):
            end = offset + width
            cost += weight * (summed[end : end + count] - summed[offset : offset + count])
        full = top + 1 > self.ceiling + 1e-9
        if not full.any():
            return cost
        blocked = np.concatenate(([0], np.cumsum(full)))
        return np.where(blocked[length : length + count] - blocked[:count] > 0, np.inf, cost)

    def _reach(self, length: int) -> int:
        offset, width, _ = self._steps(length)[-1]
        return max(offset + width, length)

    def _window(self, day: int, length: int, whole: bool) -> tuple[int, np.ndarray]:
        """(first start, cost per start) of a weekly run of `day`: its day, or its whole window."""
        if whole:
            first, count = int(window_first_bin(day)), WINDOW_BINS
        else:
            first, count = day * DAY_BINS, DAY_BINS
        bins = np.arange(first, first + count + self._reach(length))
        cost = self._costs(
            self.planned_weight.take(bins, mode="wrap"),
            self.expected_weight.take(bins, mode="wrap"),
            self.load.take(bins, mode="wrap"),
            count,
            length,
        )
        return first, cost

    def move(self, i: int) -> int:
        """Move run `i` to its cheapest start: a daily run's time of day; a weekly run on its
        day if it is on it, else anywhere in its window. Returns 1 if it moved."""
        day, length = int(self.days[i]), int(self.lengths[i])
        if day == DAILY:
            return self._move_daily(i, length)
        old = int(self.slots[i]) // BIN_S
        self._add(old, length, -1.0)
        first, cost = self._window(day, length, old // DAY_BINS != day)
        return self._settle(i, old, length, first, cost)

    def _settle(self, i: int, old: int, length: int, first: int, cost: np.ndarray) -> int:
        """Put run `i` (taken out of the load) at the cheapest start if cheaper than `old`."""
        here = (old - first) % WEEK_BINS
        best = self._cheapest(cost)
        new = old
        if here >= cost.size or cost[best] < cost[here] * (1 - 1e-9):
            new = (first + best) % WEEK_BINS
        self.slots[i] = new * BIN_S
        self._add(new, length, 1.0)
        return int(new != old)

    def _move_daily(self, i: int, length: int) -> int:
        old = int(self.slots[i]) // BIN_S
        self._add(old, length, -1.0, daily=True)
        wrap = np.arange(DAY_BINS + self._reach(length)) % DAY_BINS
        planned = self.planned_weight.reshape(7, DAY_BINS).sum(axis=0)
        expected = self.expected_weight.reshape(7, DAY_BINS).sum(axis=0)
        top = self.load.reshape(7, DAY_BINS).max(axis=0)
        cost = self._costs(planned[wrap], expected[wrap], top[wrap], DAY_BINS, length)
        best = self._cheapest(cost)
        new = best if cost[best] < cost[old] * (1 - 1e-9) else old
        self.slots[i] = new * BIN_S
        self._add(new, length, 1.0, daily=True)
        return int(new != old)


def _add_once(values: np.ndarray, at: np.ndarray, by: np.ndarray | float) -> None:
    """values[at] += by, where no bin comes twice in `at`."""
    values[at] += by
