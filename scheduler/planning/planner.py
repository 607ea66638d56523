"""The planner: a slot for every schedule of a fleet, keeping the in-flight load under the cap.

`rebalance` re-plans a whole fleet (arrays in, arrays out). Its aims, in order: the planned
load never above the cap (else the lowest peak it can reach); weekly schedules on their chosen
day where the load allows, else in their window, the longest ones leaving first since each
frees the most room; daily ones at one time every day; slots kept unless the load requires a
move; one tenant's schedules spread over different minutes.

How: schedules whose current slot is still allowed keep it, unless the kept load goes over the
target there. The rest are placed at minute resolution, a layer of non-overlapping runs at a
time: daily runs laid flat first; then day by day, the busiest day first, each day's runs on
the day itself (shortest first, so that the fewest leave), then its spill into the window's
edges, each run taking the latest start that stays under the target. If that plan still goes
over, the plans follow the on-day LP's starts per half-hour (`lp_guided`: unlike the day-by-day
plan they shape the daily load, leaving room where a busy weekend's longest runs carry their
work past its window): first the LP asked for caps under the target (`_plan_asked`), which keep
the most runs on their day; if none fits, the LP at the cap itself, then at its lowest cap;
last a plan minding the peak alone (water-filling, longest first). The lowest peak is kept. A
day-by-day plan that fits but keeps over a point fewer weekly runs on their day than the LP
could is made again from the LP at the cap (else its asked caps) too, and the one with clearly
more on their day kept. Last, runs left off their day go back onto it wherever the load there
stays under the target (for a plan over it, under its own peak): a plan over the cap still
keeps the quiet days' runs on their day. A plan under the cap still short of the LP's share then
puts runs back onto their day making room for them, others moving only within their own day
(`raise_on_day_share`). `on_day_limit`'s LP says how much weekly work could
stay on its day at best, to judge by. `LoadProfile.place` handles one schedule at a time
between rebalances.

When: a rebalance ends within TIME_LIMIT_S, the searches taking what is left. The LPs are solved
in a second thread while the rest goes on: the judging one beside the bound's, and the
quarter-hour one (where the target is near the half-hour LP's lowest cap) beside the first plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from common.slots import DAY_S, SPILL_S, WEEK_S
from scheduler.planning.load_profile import (
    BIN_S,
    DAILY,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    LoadProfile,
    add_schedules,
    add_spans,
    as_day_array,
    cyclic_window_max,
    daily_fold,
    daily_starts,
    duration_bins,
    on_their_day,
    span_bins,
    window_first_bin,
)
from scheduler.planning.lower_bound import LowerBound, lower_bound
from scheduler.planning.lp_guided import lower_peak, raise_on_day_share, realise
from scheduler.planning.on_day_limit import (
    HALF_HOURS,
    OnDayLimit,
    StartGrid,
    max_on_day_share,
    on_day_limit,
)

__all__ = [
    "LoadProfile",
    "PlanResult",
    "lower_bound",
    "max_on_day_share",
    "on_day_share",
    "planned_load",
    "rebalance",
]

# What realising the LP's starts adds to its cap, as a share of the cap (plus two runs).
REALISING_MARGIN = 0.0025
LONGER_SEARCH_UP_TO = 200_000  # schedules
# Below this many schedules, a plan aiming for the bound (the cap below it) gets search time in
# proportion, at least a fifth: a small fleet's peak is a few runs, and reaching the bound is not
# promised. One aiming for a cap that can be met gets the whole time: 2,000 schedules a run
# above the bound after 6 s reached it in 10.
FULL_SEARCH_FROM = 10_000
# How finely (in runs in flight) to search for the highest cap to ask the LP for whose plan
# fits, and the seconds each plan's search may take.
ASKED_RESOLUTION = 0.25
ASKED_TRY_BUDGET_S = 6.0
# A plan under the cap keeping this share of weekly schedules fewer on their day than the LP's
# most is made again following the LP's starts, the better kept: the day-by-day plan lays daily
# runs flat and fills the busiest day first, and on a skewed fleet with room to spare kept up
# to 4 points fewer (10,000 schedules at 1.06 x bound: 93.2% against the LP's 97.2%).
SHARE_SHORTFALL = 0.01
# Seconds all the searches of a plan over the target may take (half that above
# LONGER_SEARCH_UP_TO, less below FULL_SEARCH_FROM).
REPLAN_BUDGET_S = 30.0
# A full rebalance ends within this many seconds (a little past it at most: an LP or a plan
# under way is finished): the searches take what the LPs and the first plan leave them, and
# the finer LP is left out when it would leave them too little. On two cores a million
# schedules below the bound took 65-70 s without it.
TIME_LIMIT_S = 45.0
FINE_LP_NEEDS_S = 25.0  # the quarter-hour LP (15-19 s on two cores), realising, some search
FINISHING_S = 3.0  # after the searches: runs back onto their day, the figures
MIN_SEARCH_S = 2.0
# The LP's grid where half-hours cannot meet the target: quarter-hours, the load bounded every
# third minute. Its lowest cap is 0.4% lower at 100,000 schedules, and the planner's peak below
# the bound 1.012 x bound instead of 1.015 (by the bound before it priced whole lengths), for
# the 15-20 s of a second LP.
FINE_GRID = StartGrid(15, 3, weekly_classes=12)  # 24 classes take it past its time

# Who hears of each stage of the rebalance under way (its `stage` argument): set for the call and
# read where a stage starts, so that the helpers between need not pass it on. The LPs solved in
# the second thread run in their own context and say nothing.
_hearer: ContextVar[Callable[[str], None] | None] = ContextVar("planner_stage", default=None)


def _stage(what: str) -> None:
    hearer = _hearer.get()
    if hearer is not None:
        hearer(what)


# Where _fill may start runs: on the chosen day only, anywhere in a weekly schedule's window,
# or at any time of day for a daily schedule.
ON_DAY, DAILY_KIND, WINDOW = 1, 4, 5


@dataclass(frozen=True)
class PlanResult:
    """A plan for a fleet and how good it is."""

    slot_s: np.ndarray  # per schedule: seconds after 00:00 (daily) or Monday 00:00 (weekly)
    moved: int  # schedules that had a slot and got another one
    peak: float  # the highest planned number in flight at any minute
    lower_bound: float  # the lowest peak any plan could have
    lower_bound_explanation: str
    daily_flat_bound: float  # the lowest peak with daily runs laid flat (nan unless computed)
    on_day_share: float  # share of weekly schedules on their chosen day
    max_on_day_share: float  # the most the cap allows, from the on-day LP
    cap: float
    load: np.ndarray  # planned number in flight per minute of the week, Monday 00:00 first
    tenant_stacking: int  # most runs of one tenant starting on the same minute

    @property
    def peak_over_bound(self) -> float:
        return self.peak / self.lower_bound if self.lower_bound > 0 else float("nan")


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


def _allowed_slots(days: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Which schedules have a slot their kind allows: a time of day for a daily schedule, a
    start inside the window (the day, or 12 hours either side) for a weekly one."""
    daily = days == DAILY
    offset = (current - days.astype(np.int64) * DAY_S) % WEEK_S
    in_window = (offset < DAY_S + SPILL_S) | (offset >= WEEK_S - SPILL_S)
    return np.where(
        daily, (current >= 0) & (current < DAY_S), (current >= 0) & (current < WEEK_S) & in_window
    )


def _evict_over_cap(
    load: np.ndarray,
    days: np.ndarray,
    slots: np.ndarray,
    durations: np.ndarray,
    keep: np.ndarray,
    cap: float,
) -> None:
    """Drop kept slots until the kept load fits under the cap, the longest runs first.

    Only schedules touching an overloaded minute are reconsidered; they are re-admitted one by
    one, shortest first, while they fit.
    """
    if load.max() <= cap:
        return
    start, length = span_bins(slots, durations)
    over = np.concatenate((load > cap, load > cap)).astype(np.int64)
    reach = np.concatenate(([0], np.cumsum(over)))
    daily = days == DAILY
    touches = np.zeros(days.size, dtype=bool)
    w = keep & ~daily
    touches[w] = reach[start[w] + np.minimum(length[w], WEEK_BINS)] - reach[start[w]] > 0
    d = np.flatnonzero(keep & daily)
    for day in range(7):
        first = start[d] + day * DAY_BINS
        touches[d] |= reach[first + np.minimum(length[d], WEEK_BINS)] - reach[first] > 0
    candidates = np.flatnonzero(touches)
    add_schedules(load, days[candidates], slots[candidates], durations[candidates], -1.0)
    keep[candidates] = False
    for i in candidates[np.argsort(length[candidates], kind="stable")]:
        repeats = 7 if days[i] == DAILY else 1
        firsts = start[i] + DAY_BINS * np.arange(repeats)
        covered = (firsts[:, None] + np.arange(length[i])[None, :]).ravel() % WEEK_BINS
        if load[covered].max() + 1 <= cap:
            np.add.at(load, covered, 1.0)
            keep[i] = True


_PHASES = np.random.default_rng(20240604)


def _spaced(candidates: np.ndarray, length: int, period: int | None) -> np.ndarray:
    """A subset of sorted start bins whose runs of `length` bins do not overlap."""
    if candidates.size <= 1:
        return candidates
    new_run = np.concatenate(([True], np.diff(candidates) > 1))
    run_of = np.cumsum(new_run) - 1
    firsts = candidates[new_run]
    run_length = np.diff(np.concatenate((np.flatnonzero(new_run), [candidates.size])))
    # A random phase per stretch, so that runs do not all start on the stretches' first
    # minutes: a crowd of starts on one minute would stack tenants there.
    phase = (_PHASES.random(firsts.size) * np.minimum(run_length, length)).astype(np.int64)
    shifted = candidates - firsts[run_of] - phase[run_of]
    picks = candidates[(shifted >= 0) & (shifted % length == 0)]
    if picks.size > 1:
        picks = picks[np.concatenate(([True], np.diff(picks) >= length))]
    if period is not None and picks.size > 1 and picks[-1] + length > picks[0] + period:
        picks = picks[:-1]
    return picks


def _fill(
    load: np.ndarray, day: int, length: int, count: int, where: int, target: float | None
) -> np.ndarray:
    """Water-fill up to `count` identical runs into the load; return their slots in seconds.

    Each round puts one run on every lowest stretch of the allowed starts, the runs not
    overlapping each other (so each raises the load there by one only). With a `target`, it
    stops before any run would take the load above it, and may place fewer than `count`.
    `where` is ON_DAY (the chosen day only), WINDOW (anywhere in the window, nearest the day
    first) or DAILY_KIND.
    """
    placed: list[np.ndarray] = []
    remaining = count
    if where == DAILY_KIND:
        width = min(length, DAY_BINS)
        while remaining > 0:
            highest = cyclic_window_max(daily_fold(load), 0, DAY_BINS, width)
            level = highest.min()
            if target is not None and level + 1 > target + 1e-9:
                break
            picks = _thin(_spaced(np.flatnonzero(highest <= level), width, DAY_BINS), remaining)
            add_spans(load, daily_starts(picks), length)
            placed.append(picks)
            remaining -= picks.size
    else:
        first = window_first_bin(day)
        local = np.arange(WINDOW_BINS)
        on_day = (local >= SPILL_BINS) & (local < SPILL_BINS + DAY_BINS)
        # Off the day, a start nearer the day is closer to what its owner asked for.
        outside = np.maximum(SPILL_BINS - local, local - (SPILL_BINS + DAY_BINS - 1))
        while remaining > 0:
            highest = cyclic_window_max(load, first, WINDOW_BINS, length)
            if target is not None:
                # A run takes the latest start that fits: a long run then carries its load
                # past the day's end (or the window's), into quieter time, and leaves the room
                # behind it to the runs still to come. Days fill from their ends.
                allowed = on_day if where == ON_DAY else True
                fits = allowed & (highest + 1 <= target + 1e-9)
                picks = _spaced(np.flatnonzero(fits), length, None)
                if picks.size == 0:
                    break
                picks = picks[-remaining:]
            else:
                level = highest.min()
                picks = _spaced(np.flatnonzero(highest <= level), length, None)
                if picks.size > remaining:
                    nearest = np.argsort(outside[picks], kind="stable")[:remaining]
                    picks = np.sort(picks[nearest])
            add_spans(load, first + picks, length)
            placed.append((first + picks) % WEEK_BINS)
            remaining -= picks.size
    if not placed:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(placed).astype(np.int64) * BIN_S


def _thin(picks: np.ndarray, wanted: int) -> np.ndarray:
    """At most `wanted` of the picks, evenly spread."""
    if picks.size <= wanted:
        return picks
    return picks[np.linspace(0, picks.size - 1, wanted).round().astype(np.int64)]


def _spread_order(tenant_codes: np.ndarray, seed: int) -> np.ndarray:
    """An order of items in which each tenant's items are spread evenly from first to last."""
    rng = np.random.default_rng(seed)
    jitter = rng.random(tenant_codes.size)
    by_tenant = np.lexsort((jitter, tenant_codes))
    sorted_codes = tenant_codes[by_tenant]
    first_of = np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1]))
    group_start = np.flatnonzero(first_of)
    sizes = np.diff(np.concatenate((group_start, [tenant_codes.size])))
    group_of = np.cumsum(first_of) - 1
    rank = np.arange(tenant_codes.size) - group_start[group_of]
    position = np.empty(tenant_codes.size)
    offset = rng.random(group_start.size)
    position[by_tenant] = (rank + offset[group_of]) / sizes[group_of]
    return np.argsort(position, kind="stable")


def _tenant_stacking(days: np.ndarray, slots: np.ndarray, codes: np.ndarray) -> int:
    """The most runs of one tenant that start on the same minute of the week."""
    if days.size == 0:
        return 0
    minute = slots // BIN_S
    daily = days == DAILY
    week_minutes = np.concatenate((minute[~daily], daily_starts(minute[daily]))).astype(np.int64)
    owners = np.concatenate((codes[~daily], np.repeat(codes[daily], 7))).astype(np.int64)
    _, counts = np.unique(owners * WEEK_BINS + week_minutes, return_counts=True)
    return int(counts.max())


def _groups(members: np.ndarray, key: np.ndarray) -> list[np.ndarray]:
    """Members split by key, in ascending key order."""
    if members.size == 0:
        return []
    order = np.argsort(key, kind="stable")
    members, key = members[order], key[order]
    return np.split(members, np.flatnonzero(np.diff(key)) + 1)


def _place_all(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    todo: np.ndarray,
    target: float,
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Place the schedules in `todo` into the load; yield (members, their slots) as it goes.

    Daily runs go first, longest first: the same on every day, they are best laid flat. Then
    the weekly runs, longest first, in three passes: on their chosen day without going over
    the target; what did not fit, anywhere in their window without going over it (nearest
    the day first); what still did not fit, wherever the load grows least. The first pass
    fills every day before any run leaves its day, so a run leaves only for want of room.
    """
    daily = todo[days[todo] == DAILY]
    weekly = todo[days[todo] != DAILY]
    for members in _groups(daily, -lengths[daily]):
        members = members[_spread_order(codes[members], seed=int(members[0]) & 0xFFFF)]
        length = int(lengths[members[0]])
        got = _fill(load, DAILY, length, members.size, DAILY_KIND, target)
        rest = _fill(load, DAILY, length, members.size - got.size, DAILY_KIND, None)
        yield members, np.concatenate((np.sort(got), np.sort(rest)))
    # Day by day, the busiest first: a busy day claims its own day, then its spill claims the
    # edges of the neighbouring days, before those days' own runs are placed around them.
    work = np.bincount(days[weekly], weights=lengths[weekly], minlength=7)
    waiting: list[np.ndarray] = []
    for day in np.argsort(-work, kind="stable"):
        of_day = weekly[days[weekly] == day]
        spilled: list[np.ndarray] = []
        # Shortest first on the day: when not all fit, the longest leave, each freeing the most
        # room, so the fewest schedules leave their day.
        for members in _groups(of_day, lengths[of_day]):
            members = members[_spread_order(codes[members], seed=int(members[0]) & 0xFFFF)]
            got = _fill(load, int(day), int(lengths[members[0]]), members.size, ON_DAY, target)
            yield members[: got.size], np.sort(got)
            if got.size < members.size:
                spilled.append(members[got.size :])
        for members in spilled[::-1]:
            got = _fill(load, int(day), int(lengths[members[0]]), members.size, WINDOW, target)
            yield members[: got.size], np.sort(got)
            if got.size < members.size:
                waiting.append(members[got.size :])
    # What fits nowhere under the target goes wherever the load grows least.
    for members in waiting:
        got = _fill(
            load, int(days[members[0]]), int(lengths[members[0]]), members.size, WINDOW, None
        )
        yield members, np.sort(got)


def _place_peak_first(
    load: np.ndarray, days: np.ndarray, lengths: np.ndarray, codes: np.ndarray, todo: np.ndarray
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Place for the lowest peak alone: every run, longest first, where the load is lowest in
    its window (its day winning ties). The fallback when the cap cannot be met."""
    for members in _groups(todo, -lengths[todo] * 8 + days[todo]):
        members = members[_spread_order(codes[members], seed=int(members[0]) & 0xFFFF)]
        day = int(days[members[0]])
        where = DAILY_KIND if day == DAILY else WINDOW
        yield (
            members,
            np.sort(_fill(load, day, int(lengths[members[0]]), members.size, where, None)),
        )


def _pull_onto_days(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    movable: np.ndarray,
    target: float,
) -> None:
    """Move runs placed off their chosen day back onto it wherever the load there stays under
    `target`, without raising the load above it or above what it was anywhere.

    A plan minding the peak first spreads every day's runs over its whole window, also on quiet
    days with room to spare; this gives those runs back their day. Runs of one day and length
    move together; if putting the ones that must stay back where they were would raise the load
    somewhere (they may overlap the moved ones), that group is left as it was.
    """
    weekly = movable[days[movable] != DAILY]
    off = weekly[~on_their_day(days[weekly], slots[weekly])]
    for members in _groups(off, days[off].astype(np.int64) * WEEK_BINS + lengths[off]):
        day, length = int(days[members[0]]), int(lengths[members[0]])
        before = load.copy()
        old = slots[members] // BIN_S
        add_spans(load, old, length, -1.0)
        got = _fill(load, day, length, members.size, ON_DAY, target)
        add_spans(load, old[got.size :], length)
        if (load > np.maximum(before, target) + 1e-9).any():
            load[:] = before
            continue
        slots[members[: got.size]] = got


def _plan_guided(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    limit: OnDayLimit,
    goal: float,
    budget_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(slots, load) following the LP's starts, runs then moved off the busiest minutes
    until the peak is at most `goal` or `budget_s` seconds pass."""
    _stage(
        f"following the on-day LP's starts at a cap of {limit.cap:.2f}, then moving runs off "
        f"the peak for up to {budget_s:.0f} s, toward {goal:g}"
    )
    slots = realise(days, lengths, limit)
    placed = slots >= 0
    load = planned_load(days[placed], lengths[placed] * BIN_S, slots[placed])
    # Runs the LP's rounded starts left out, if any, go where the load grows least.
    for members, slot_of in _place_peak_first(load, days, lengths, codes, np.flatnonzero(~placed)):
        slots[members] = slot_of
    lower_peak(load, days, lengths, slots, budget_s, goal)
    return slots, load


def _realising_margin(target: float) -> float:
    """How far above the LP's cap its realised plan is expected to peak: the LP bounds the load
    at every fifth minute and counts fractions of runs; whole runs on every minute come out
    a little higher, even after moving runs off the busiest minutes."""
    return REALISING_MARGIN * target + 2


def _plan_under(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    target: float,
    asked: float,
    lowest: float,
    budget_s: float,
    grid: StartGrid,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(slots, load) following the LP asked for `asked`, if its plan gets under the target."""
    try:
        limit = on_day_limit(days, durations, asked, lowest, grid)
    except RuntimeError:  # out of time: no plan from this cap
        return None
    return _plan_if_fits(days, durations, lengths, codes, limit, target, budget_s)


def _plan_asked(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    target: float,
    lowest: float,
    deadline: float,
    reserve_s: float = 0.0,
    grid: StartGrid = HALF_HOURS,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(slots, load) under the target keeping the most runs on their day that the LP's asked
    caps give, or None if none got under.

    The higher the cap asked for, the more runs the LP keeps on their day, and the likelier its
    realised plan goes over the target. So the asked cap is searched for by halving, between a
    cap whose plan fits (at first the LP's lowest, assumed) and one whose plan does not (at
    first the target): first the target less what realising usually adds, or, with no room for
    that margin, a cap a tenth of the way up from the lowest (just above its lowest cap the
    LP's share on their day climbs steeply: at 10,000 schedules from 76% at the lowest to 88% a
    tenth of a run above). `lowest` and the LPs are on `grid`. It stops when the two are
    ASKED_RESOLUTION of a run apart or `deadline` (monotonic) passes, `reserve_s` before it
    while no plan fits (the caller's time for a plan at the lowest cap); of the plans that fit,
    the one with the most runs on their day wins.
    """

    def budget() -> float:
        reserve = reserve_s if best is None else 0.0
        return min(ASKED_TRY_BUDGET_S, deadline - reserve - time.monotonic())

    fits, over = lowest, target
    first = target - _realising_margin(target)
    asked = first if first > lowest + 1e-6 else lowest + 0.1 * (target - lowest)
    best: tuple[np.ndarray, np.ndarray] | None = None
    # A try with less than a second to search would only waste its LP solve.
    while over - fits > ASKED_RESOLUTION and budget() >= 1.0:
        plan = _plan_under(days, durations, lengths, codes, target, asked, lowest, budget(), grid)
        if plan is None:
            over = asked
        else:
            fits = asked
            if best is None or on_day_share(days, plan[0]) >= on_day_share(days, best[0]):
                best = plan
        asked = (fits + over) / 2
    return best


def _replan_over_target(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    target: float,
    meetable: bool,
    judged: OnDayLimit | None = None,
    lp_failed: bool = False,
    deadline: float = float("inf"),
    fine_ahead: Future[OnDayLimit | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(slots, load) for a fleet the day-by-day plan put over the target, by `deadline`
    (monotonic; see TIME_LIMIT_S).

    When the target can be met, the LP is asked for caps under it (`_plan_asked`): of plans that
    fit, those keep the most runs on their day. If none gets under, the LP at the cap itself may
    still give a plan that does (on a large fleet with no room above the lowest cap for what
    realising adds, it goes first). Else, or if the target cannot be met, the plan follows the
    LP at its lowest cap, and last the plan minding the peak alone; the lowest peak is kept.
    `judged`, the LP that judges the plan, if solved: its lowest cap is the one to ask above,
    and when it could not meet the cap it is the LP at that lowest cap.
    `lp_failed`: that LP ran out of time, and so would these: the plan minding the peak alone.
    `fine_ahead`: the quarter-hour LP at its lowest cap, if already under way.
    """
    if lp_failed:
        return _plan_peak_first(days, durations, lengths, codes)
    lowest = judged if judged is not None and not judged.feasible else None
    lowest_cap = judged.lowest if judged is not None else float("nan")
    if np.isnan(lowest_cap):
        lowest = _lowest_limit(days, durations)
        if lowest is None:
            return _plan_peak_first(days, durations, lengths, codes)
        lowest_cap = lowest.cap
    grid = HALF_HOURS
    fine: OnDayLimit | None = None
    fine_in_time = fine_ahead is not None or deadline - time.monotonic() >= FINE_LP_NEEDS_S
    if _fine_wanted(target, lowest_cap) and fine_in_time:
        if fine_ahead is not None:
            _stage(
                "waiting for the on-day LP at its lowest cap, starts every "
                f"{FINE_GRID.start_min} minutes"
            )
            fine = fine_ahead.result()
        else:
            fine = _fine_limit(days, durations, deadline)
        # Its periods are finer but its classes coarser: on a fleet of widely spread lengths
        # the half-hour LP can reach lower.
        if fine is not None and fine.cap < lowest_cap:
            lowest, lowest_cap, grid = fine, fine.cap, FINE_GRID
    started = time.monotonic()
    total = min(
        _search_budget(days.size, meetable), max(MIN_SEARCH_S, deadline - FINISHING_S - started)
    )
    margin_room = target - _realising_margin(target) > lowest_cap
    at_cap = judged if meetable and judged is not None and judged.feasible else None
    # With no room above the lowest cap for what realising usually adds, the asked caps keep
    # few more on their day than the lowest (their share climbs steeply just above it). Where
    # the margin is mostly its two whole runs, the plan at the cap itself, over the target at
    # first, often gets under it with moves off the busiest minutes given the time: it goes
    # first, with two thirds of the time (20,000 schedules, Saturday-heavy, a run under
    # 1.011 x bound: 85.8% on their day in 22 s, where the lowest cap's plan keeps 63.4%). The
    # last third is the lowest cap's. On larger fleets the asked caps do better (100,000 at
    # 1.012 x bound: 88.5% against 75.7%). Small fleets at their bound keep as many on their
    # day either way, sooner this way (3,000 at 1.03 x bound: 6 s instead of 14).
    cap_first = at_cap is not None and not margin_room and target * REALISING_MARGIN <= 2
    if cap_first and at_cap is not None:
        plan = _plan_if_fits(days, durations, lengths, codes, at_cap, target, total * 2 / 3)
        if plan is not None:
            return plan
    # On the quarter-hour grid each asked cap takes a slow LP: with no room above the lowest
    # cap for what realising adds, the plan at the lowest cap gets all the time instead, and
    # runs go back onto their day afterwards, under the target.
    if meetable and (grid == HALF_HOURS or margin_room):
        # While no asked cap's plan fits, a third of the time is kept for the lowest cap's.
        plan = _plan_asked(
            days, durations, lengths, codes, target, lowest_cap, started + total, total / 3, grid
        )
        if plan is not None:
            return plan
    if at_cap is not None and not cap_first:
        # No asked cap's plan fit; the plan at the cap may still get under, with moves off the
        # busiest minutes: half the time left, the rest the lowest cap's.
        budget = max(MIN_SEARCH_S, (started + total - time.monotonic()) / 2)
        plan = _plan_if_fits(days, durations, lengths, codes, at_cap, target, budget)
        if plan is not None:
            return plan
    if lowest is None:  # the judging LP met the cap: the lowest cap's starts are solved now
        # By the deadline, less the least search: on an evenly spread fleet of 5,000 this LP
        # took 13 s after the others had taken the time, and the rebalance 55 s. Out of time,
        # the quarter-hour LP at its lowest, if solved, is near enough, else the LP at the cap.
        lowest = _lowest_limit(days, durations, grid, deadline - FINISHING_S - MIN_SEARCH_S)
        lowest = lowest or fine or at_cap
        if lowest is None:
            return _plan_peak_first(days, durations, lengths, codes)
    # The last plan aiming for the target, the rest of the time (at least a third of the
    # searches' time, if the deadline allows). Below the bound the target is the bound itself:
    # a plan that reaches it need search no further.
    now = time.monotonic()
    budget = max(total / 3, started + total - now)
    budget = max(MIN_SEARCH_S, min(budget, deadline - FINISHING_S - now))
    slots, load = _plan_guided(days, durations, lengths, codes, lowest, target, budget)
    # The plan minding the peak alone rarely does better, but a fleet the LP's periods fit badly
    # (runs much longer than the window, say) is realised far above the LP's cap.
    if load.max() > max(target, lowest.cap * 1.01 + 2) + 1e-9:
        other, other_load = _plan_peak_first(days, durations, lengths, codes)
        if other_load.max() < load.max():
            return other, other_load
    return slots, load


def _plan_if_fits(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    limit: OnDayLimit,
    target: float,
    budget_s: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(slots, load) following the LP's `limit`, if its plan gets under the target within
    `budget_s` seconds of search."""
    slots, load = _plan_guided(days, durations, lengths, codes, limit, target, budget_s)
    return (slots, load) if load.max() <= target + 1e-9 else None


def _plan_for_share(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    target: float,
    limit: OnDayLimit,
    deadline: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(slots, load) under the target following `limit`, the LP at the cap, or else the LP
    asked for caps under it, its runs then pulled onto their day; None if no plan fit in the
    time before `deadline`."""
    started = time.monotonic()
    total = min(_search_budget(days.size), deadline - FINISHING_S - started)
    if total < MIN_SEARCH_S:
        return None
    # The LP at the cap keeps the most on their day: when its plan fits (as it often does with
    # room to spare, in a few seconds) no asked cap's can do better.
    first = min(ASKED_TRY_BUDGET_S, total)
    plan = _plan_if_fits(days, durations, lengths, codes, limit, target, first)
    if plan is None:
        plan = _plan_asked(days, durations, lengths, codes, target, limit.lowest, started + total)
    if plan is not None:
        _pull_onto_days(plan[1], days, lengths, plan[0], np.arange(days.size), target)
    return plan


def _raised(
    load: np.ndarray,
    days: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    share: float,
    target: float,
    limit: OnDayLimit,
    deadline: float,
    kept: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(slots, load) with runs off their day (`share` on it) put back onto it, making room (on
    copies), until within half of SHARE_SHORTFALL of `limit`'s share or FINISHING_S before
    `deadline`; a plan mostly `kept` from before changes only if that gains a clear margin, so
    that a rebalance of a plan already made does not churn it."""
    if load.max() > target + 1e-9 or time.monotonic() >= deadline - FINISHING_S:
        return slots, load
    weekly = int((days != DAILY).sum())
    wanted = int(np.ceil((limit.share - SHARE_SHORTFALL / 2) * weekly))
    _stage(
        f"putting runs back onto their day where others make room: {share:.1%} on it, the LP's "
        f"most {limit.share:.1%}"
    )
    new_slots, new_load = slots.copy(), load.copy()
    gained = raise_on_day_share(
        new_load, days, lengths, new_slots, target, deadline - FINISHING_S, wanted
    )
    if gained and (not kept or gained > SHARE_SHORTFALL / 2 * weekly):
        return new_slots, new_load
    return slots, load


def _fine_wanted(target: float, lowest_cap: float) -> bool:
    """Whether the quarter-hour LP is wanted: no room above the half-hour LP's lowest cap for
    what realising adds on a large fleet. (The margin's two runs are left out: on a small fleet
    the half-hour LP's plans fit that close, at 10,000 schedules with as many on their day, in
    half the time.)"""
    return target * (1 - REALISING_MARGIN) < lowest_cap


def _search_budget(size: int, meetable: bool = False) -> float:
    """Seconds the searches of a re-plan may take for a fleet of `size` schedules, aiming for a
    cap that can be met (`meetable`) or below the bound for the bound itself."""
    if size > LONGER_SEARCH_UP_TO:
        # Whole runs round the LP's starts finely and the searches gain less, and the LPs and
        # the day-by-day plan take longer: less time to search.
        return REPLAN_BUDGET_S * 0.5
    if meetable:
        return REPLAN_BUDGET_S
    return REPLAN_BUDGET_S * min(1.0, max(0.2, size / FULL_SEARCH_FROM))


def _lowest_limit(
    days: np.ndarray,
    durations: np.ndarray,
    grid: StartGrid = HALF_HOURS,
    deadline: float = float("inf"),
) -> OnDayLimit | None:
    """The LP at its lowest cap, or None if it ran out of time."""
    _stage(f"solving the on-day LP at its lowest cap, starts every {grid.start_min} minutes")
    try:
        return on_day_limit(days, durations, None, grid=grid, deadline=deadline)
    except RuntimeError:
        return None


def _fine_limit(days: np.ndarray, durations: np.ndarray, deadline: float) -> OnDayLimit | None:
    """The quarter-hour LP at its lowest cap, leaving the searches their least time before
    `deadline`; None if it ran out of time."""
    return _lowest_limit(days, durations, FINE_GRID, deadline - FINISHING_S - MIN_SEARCH_S)


def _plan_day_by_day(
    days: np.ndarray,
    durations: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    current: np.ndarray,
    target: float,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(which schedules had an allowed slot, slots, load, schedules placed anew): the kept slots
    that fit under the target, the rest placed day by day."""
    had_slot = _allowed_slots(days, current)
    keep = had_slot.copy()
    load = np.zeros(WEEK_BINS)
    add_schedules(load, days[keep], current[keep], durations[keep])
    _evict_over_cap(load, days, current, durations, keep, target)
    slots = np.where(keep, current, -1)
    todo = np.flatnonzero(~keep)
    for members, slot_of in _place_all(load, days, lengths, codes, todo, target):
        slots[members] = slot_of
        if progress is not None:
            progress(members.size)
    return had_slot, slots, load, todo


def _plan_peak_first(
    days: np.ndarray, durations: np.ndarray, lengths: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(slots, load) minding the peak alone: water-filling, longest first."""
    load = np.zeros(WEEK_BINS)
    slots = np.full(days.size, -1, dtype=np.int64)
    for members, slot_of in _place_peak_first(load, days, lengths, codes, np.arange(days.size)):
        slots[members] = slot_of
    return slots, load


def rebalance(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    tenant_id: np.ndarray | Iterable[Hashable],
    current_slot: np.ndarray | Iterable[int],
    cap: float,
    progress: Callable[[int], None] | None = None,
    with_limit: bool = True,
    time_limit_s: float = TIME_LIMIT_S,
    stage: Callable[[str], None] | None = None,
) -> PlanResult:
    """Re-plan a whole fleet. Arrays are per schedule; day_of_week holds None or -1 for daily
    schedules; current_slot holds -1 for a schedule without a slot yet.

    A schedule keeps its current slot when its kind allows that slot and the kept load stays
    under the target there; the others are placed as the module docstring says. The LPs that
    judge the plan (the best on-day share, the hourly bound) run only `with_limit` (seconds).
    `progress`, if given, is called with counts of schedules placed day by day; `stage` with a
    line saying what the planner does next, as each stage starts (a rebalance near the bound
    takes most of its time after the placing). It takes about `time_limit_s` at most (see
    TIME_LIMIT_S).
    """
    hearing = _hearer.set(stage)
    try:
        return _rebalance(
            day_of_week,
            duration_s,
            tenant_id,
            current_slot,
            cap,
            progress,
            with_limit,
            time_limit_s,
        )
    finally:
        _hearer.reset(hearing)


def _rebalance(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    tenant_id: np.ndarray | Iterable[Hashable],
    current_slot: np.ndarray | Iterable[int],
    cap: float,
    progress: Callable[[int], None] | None,
    with_limit: bool,
    time_limit_s: float,
) -> PlanResult:
    deadline = time.monotonic() + time_limit_s
    days = as_day_array(day_of_week)
    durations = np.asarray(duration_s, dtype=np.float64)
    current = np.asarray(current_slot, dtype=np.int64)
    tenants = np.asarray(tenant_id)
    if not (days.size == durations.size == current.size == tenants.size):
        raise ValueError("all arrays must have one entry per schedule")
    if ((days < DAILY) | (days > 6)).any():
        raise ValueError("day_of_week must be None/-1 (daily) or 0..6")
    if (durations < 0).any() or not np.isfinite(durations).all():
        raise ValueError("expected durations must be finite and non-negative")
    _, codes = np.unique(tenants, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    lengths = duration_bins(durations)

    # LPs are solved beside the rest: HiGHS lets go of the interpreter while it solves, and a
    # second core takes them. One the plan turns out not to need may finish after it returns.
    beside = ThreadPoolExecutor(max_workers=1)
    try:
        # The load is a whole number at every minute: no plan under the cap goes above the cap
        # rounded down, and the LP there bounds their share on their day the more tightly
        # (1,000 schedules at a cap of 22.66: 82.3% where the LP at 22.66 said 90.8%).
        whole = float(np.floor(cap + 1e-9))
        judging = beside.submit(on_day_limit, days, durations, whole) if with_limit else None
        _stage("the lower bound: an LP over the hours of the week")
        bound: LowerBound = lower_bound(days, durations, hourly=with_limit)
        limit = None
        lp_failed = False
        if judging is not None:
            _stage(f"the most runs on their day under {whole:g}: the on-day LP at the cap")
            try:
                limit = judging.result()
            except RuntimeError:  # out of time: the plan is left unjudged, not unmade
                lp_failed = True
        # The cap the load must stay under is the cap rounded down, or when no plan can meet
        # it, the bound (itself a whole number).
        target = whole if cap >= bound.value else bound.value
        # The quarter-hour LP a plan over the target would want, solved during the first plan.
        near = limit.lowest if limit is not None else bound.value if cap < bound.value else 0.0
        fine_ahead = None
        in_time = deadline - time.monotonic() >= FINE_LP_NEEDS_S
        if not lp_failed and in_time and _fine_wanted(target, near):
            fine_ahead = beside.submit(_fine_limit, days, durations, deadline)

        pulled = False
        _stage(f"placing {days.size:,} schedules day by day under {target:g}")
        had_slot, slots, load, todo = _plan_day_by_day(
            days, durations, lengths, codes, current, target, progress
        )
        if load.max() > target + 1e-9:
            _stage(
                f"the day-by-day plan peaks at {load.max():.0f}, above {target:g}: planning "
                f"from the on-day LP"
            )
            other, other_load = _replan_over_target(
                days,
                durations,
                lengths,
                codes,
                target,
                cap >= bound.value,
                limit,
                lp_failed,
                deadline,
                fine_ahead,
            )
            if other_load.max() < load.max():
                slots, load = other, other_load
                todo = np.arange(days.size)
        elif limit is not None and limit.feasible:
            _pull_onto_days(load, days, lengths, slots, todo, target)
            pulled = True
            share = on_day_share(days, slots)
            if limit.share - share > SHARE_SHORTFALL:
                _stage(
                    f"the day-by-day plan keeps {share:.1%} on their day, the LP's most "
                    f"{limit.share:.1%}: planning from the LP too"
                )
                other = _plan_for_share(days, durations, lengths, codes, target, limit, deadline)
                # By a clear margin: a plan already made is not churned for a few schedules.
                gain = SHARE_SHORTFALL / 2
                if other is not None and on_day_share(days, other[0]) > share + gain:
                    slots, load = other
                    todo = np.arange(days.size)
    finally:
        beside.shutdown(wait=False, cancel_futures=True)
    if not pulled:
        # A plan over the target has its own peak as the limit: moving runs onto their day under
        # it keeps the lowest peak there is.
        _pull_onto_days(load, days, lengths, slots, todo, max(target, float(load.max())))

    share = on_day_share(days, slots)
    if limit is not None and limit.feasible and limit.share - share > SHARE_SHORTFALL:
        kept = todo.size < days.size
        slots, load = _raised(load, days, lengths, slots, share, target, limit, deadline, kept)
        share = on_day_share(days, slots)

    moved = int((had_slot & (slots != current)).sum())
    return PlanResult(
        slot_s=slots,
        moved=moved,
        peak=float(load.max()) if load.size else 0.0,
        lower_bound=bound.value,
        lower_bound_explanation=bound.explanation,
        daily_flat_bound=bound.daily_flat if bound.daily_flat is not None else float("nan"),
        on_day_share=share,
        max_on_day_share=limit.share if limit is not None else float("nan"),
        cap=float(cap),
        load=load,
        tenant_stacking=_tenant_stacking(days, slots, codes),
    )
