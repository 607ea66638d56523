"""The third aim, minute by minute: runs moved one at a time to where the load they meet, and
the load they leave behind them, weigh least.

Levelling (`levelling.py`) fills whole groups back in at the lowest load; it leaves a busy day
level at its mean, but near the cap, where a few images running long make the next ones wait.
Here each run placed anew, longest first, moves to the start its kind allows where it weighs
least, a minute weighing exp((load - ceiling) / scale): the minutes near the cap weigh most, so
work moves off them into quieter hours first, a busy day's long runs into the next day, the
next day's runs later to make room. The load is counted twice: as planned, and as runs can
expect it, each run weighing on the minutes after its expected end as likely as it is to be
still running (`DURATION_SPREAD`); so runs do not all end on the minute where the next day's
runs all start. Among starts that weigh alike one is drawn, not the first, and a run does not
start on a minute where another of its tenant's does. A run on its day stays on it, a daily run
keeps one time for every day, the planned load never goes above the ceiling, and kept slots do
not move.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from statistics import NormalDist

import numpy as np

from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.week import (
    BIN_S,
    DAILY,
    DAY_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    add_spans,
    daily_starts,
    window_first_bin,
)

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
#: Tenants of at least this many runs have the minutes their runs start on counted once and
#: kept up to date, not counted afresh for each of their runs moved.
_KEPT_FROM = 1000


def _tail_spans(lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """Per step of a run's weight (`_TAIL`): (where it begins, where it ends, in bins from the
    run's start; its weight) for runs of `lengths` bins. A step ends at the run's duration at
    its quantile, lognormal of log-sd DURATION_SPREAD around its length."""
    sigma = DURATION_SPREAD
    lengths = np.asarray(lengths, dtype=np.float64)
    begins = np.zeros(lengths.size, dtype=np.int64)
    for k, (quantile, weight) in enumerate(_TAIL):
        factor = math.exp(sigma * NormalDist().inv_cdf(quantile) - sigma**2 / 2)
        ends = np.minimum(np.round(lengths * factor), WEEK_BINS).astype(np.int64)
        ends = np.maximum(ends, begins + 1 if k == 0 else begins)
        yield begins, ends, weight
        begins = ends


def _tail_steps(length: int) -> list[tuple[int, int, float]]:
    """(offset, width, weight) steps in bins of a run of `length` bins: how likely it is still
    in flight that long after it starts."""
    return [
        (int(a[0]), int(b[0] - a[0]), w)
        for a, b, w in _tail_spans(np.array([length]))
        if b[0] > a[0]
    ]


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
    if movable.size == 0:
        return 0
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
        self.days, self.lengths, self.tenants = fleet.days, fleet.lengths, fleet.tenants
        self.by_tenant = np.argsort(fleet.tenants, kind="stable")
        self.sorted_tenants = fleet.tenants[self.by_tenant]
        self.tenant_starts: dict[int, np.ndarray] = {}
        self.ceiling, self.scale = ceiling, scale
        self.steps: dict[int, list[tuple[int, int, float]]] = {}
        self.shapes: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = {}
        self.expected = np.zeros(WEEK_BINS)
        starts = plan.slots // BIN_S
        daily = fleet.days == DAILY
        first = np.concatenate((starts[~daily], daily_starts(starts[daily])))
        lengths = np.concatenate((fleet.lengths[~daily], np.repeat(fleet.lengths[daily], 7)))
        for begins, ends, weight in _tail_spans(lengths):
            add_spans(self.expected, first + begins, ends - begins, weight)
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
        self,
        planned: np.ndarray,
        expected: np.ndarray,
        top: np.ndarray,
        count: int,
        length: int,
        period: int = WEEK_BINS,
    ) -> np.ndarray:
        """Per start s < count: the weight a run of `length` adds from s on (`planned` and
        `expected` weights per bin from the first start), inf where the planned load `top` has
        no room for it. A run repeated every `period` bins (a daily one) and longer than that
        overlaps its own repeats: the first `length - k * period` bins from its start carry
        k + 1 of them, and need room for as many."""
        summed = np.concatenate(([0.0], np.cumsum(planned)))
        cost = summed[length : length + count] - summed[:count]
        summed = np.concatenate(([0.0], np.cumsum(expected)))
        for offset, width, weight in self._steps(length):
            end = offset + width
            cost += weight * (summed[end : end + count] - summed[offset : offset + count])
        blocked = np.zeros(count, dtype=bool)
        for copies, span in enumerate(range(length, 0, -period), start=1):
            full = top + copies > self.ceiling + 1e-9
            if full.any():
                over = np.concatenate(([0], np.cumsum(full)))
                blocked |= over[span : span + count] - over[:count] > 0
        return np.where(blocked, np.inf, cost) if blocked.any() else cost

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
        self._keep_apart(i, cost, first, WEEK_BINS)
        return self._settle(i, old, length, first, cost)

    def _keep_apart(self, i: int, cost: np.ndarray, first: int, period: int) -> None:
        """Rule out the starts where more of run `i`'s tenant's other runs start than where
        fewest do (none, unless the tenant is big), so that one tenant's runs are not stacked
        on one minute: the step of the load at a busy day's first minute would otherwise gather
        a big tenant's runs there."""
        starts = self._tenant_starts(int(self.tenants[i]))
        if starts is None:
            return
        own = self._starts_of(np.array([i]))
        if period == DAY_BINS:
            starts = starts.reshape(7, DAY_BINS).sum(axis=0)
            own %= DAY_BINS
        taken = starts.take(np.arange(first, first + cost.size) % period)
        at = (own - first) % period
        np.subtract.at(taken, at[at < cost.size], 1)
        cost[taken > taken.min()] = np.inf

    def _tenant_starts(self, tenant: int) -> np.ndarray | None:
        """How many of `tenant`'s runs start at each minute of the week; None for a tenant of
        one run. A big tenant's count is kept and updated as its runs move (`_moved`), since
        counting its runs afresh for each move would take longer than the move."""
        starts = self.tenant_starts.get(tenant)
        if starts is not None:
            return starts
        lo, hi = np.searchsorted(self.sorted_tenants, [tenant, tenant + 1])
        if hi - lo <= 1:
            return None
        starts = np.bincount(self._starts_of(self.by_tenant[lo:hi]), minlength=WEEK_BINS)
        if hi - lo >= _KEPT_FROM:
            self.tenant_starts[tenant] = starts
        return starts

    def _starts_of(self, runs: np.ndarray) -> np.ndarray:
        """The minutes of the week `runs` start on, a daily run's seven."""
        minutes = self.slots[runs] // BIN_S
        daily = self.days[runs] == DAILY
        return np.concatenate((minutes[~daily], daily_starts(minutes[daily])))

    def _moved(self, i: int, old: int, new: int) -> None:
        """Run `i` moved from start `old` to `new`: its tenant's kept count follows."""
        starts = self.tenant_starts.get(int(self.tenants[i]))
        if starts is None or new == old:
            return
        daily = self.days[i] == DAILY
        olds, news = (daily_starts(np.array([t])) if daily else t for t in (old, new))
        np.subtract.at(starts, olds, 1)
        np.add.at(starts, news, 1)

    def _settle(self, i: int, old: int, length: int, first: int, cost: np.ndarray) -> int:
        """Put run `i` (taken out of the load) at the cheapest start if cheaper than `old`."""
        here = (old - first) % WEEK_BINS
        best = self._cheapest(cost)
        new = old
        if here >= cost.size or cost[best] < cost[here] * (1 - 1e-9):
            new = (first + best) % WEEK_BINS
        self.slots[i] = new * BIN_S
        self._moved(i, old, new)
        self._add(new, length, 1.0)
        return int(new != old)

    def _move_daily(self, i: int, length: int) -> int:
        old = int(self.slots[i]) // BIN_S
        self._add(old, length, -1.0, daily=True)
        wrap = np.arange(DAY_BINS + self._reach(length)) % DAY_BINS
        planned = self.planned_weight.reshape(7, DAY_BINS).sum(axis=0)
        expected = self.expected_weight.reshape(7, DAY_BINS).sum(axis=0)
        top = self.load.reshape(7, DAY_BINS).max(axis=0)
        cost = self._costs(planned[wrap], expected[wrap], top[wrap], DAY_BINS, length, DAY_BINS)
        self._keep_apart(i, cost, 0, DAY_BINS)
        best = self._cheapest(cost)
        new = best if cost[best] < cost[old] * (1 - 1e-9) else old
        self.slots[i] = new * BIN_S
        self._moved(i, old, new)
        self._add(new, length, 1.0, daily=True)
        return int(new != old)


def _add_once(values: np.ndarray, at: np.ndarray, by: np.ndarray | float) -> None:
    """values[at] += by, where no bin comes twice in `at`."""
    values[at] += by
