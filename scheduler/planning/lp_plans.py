"""Plans that follow the on-day LP's starts per half-hour (or a finer grid), runs then moved off
the busiest minutes; which cap to ask the LP for; and the LP at its lowest cap.

Unlike the day-by-day plan these shape the daily load, leaving room where a busy weekend's
longest runs carry their work past its window. The LP asked for a higher cap keeps more runs
on their day, and its realised plan is likelier to go over the target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from scheduler.planning.back_on_their_day import pull_onto_their_day
from scheduler.planning.context import (
    FINE_LP_NEEDS_S,
    MIN_SEARCH_TRIES,
    RebalanceRun,
    Work,
    search_tries,
)
from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.lp_guided import lower_peak, realise
from scheduler.planning.observer import Observer
from scheduler.planning.on_day_limit import HALF_HOURS, OnDayLimit, StartGrid, on_day_limit
from scheduler.planning.peak_first import place_peak_first
from scheduler.planning.week import BIN_S, on_day_share, planned_load

#: What realising the LP's starts adds to its cap, as a share of the cap (plus two runs).
REALISING_MARGIN = 0.0025
#: How finely (in runs in flight) to search for the highest cap to ask the LP for whose plan
#: fits, and the tries each plan's search may make.
ASKED_RESOLUTION = 0.25
ASKED_TRIES = 24_000
#: The LP's grid where half-hours cannot meet the target: quarter-hours, the load bounded every
#: third minute. 12 weekly classes: 24 take it past its time.
FINE_GRID = StartGrid(15, 3, weekly_classes=12)


def realising_margin(target: float) -> float:
    """How far above the LP's cap its realised plan is expected to peak: the LP bounds the load
    at every fifth minute and counts fractions of runs; whole runs on every minute come out
    a little higher, even after moving runs off the busiest minutes."""
    return REALISING_MARGIN * target + 2


def fine_wanted(target: float, lowest_cap: float) -> bool:
    """Whether the quarter-hour LP is wanted: no room above the half-hour LP's lowest cap for
    what realising adds on a large fleet. (The margin's two runs are left out: on a small fleet
    the half-hour LP's plans fit that close.)"""
    return target * (1 - REALISING_MARGIN) < lowest_cap


def announce_lowest(observer: Observer, grid: StartGrid) -> None:
    """The stage line of `lowest_limit`, said by callers in the planner's own thread."""
    observer.stage(
        f"solving the on-day LP at its lowest cap, starts every {grid.start_min} minutes"
    )


def lowest_limit(
    fleet: Fleet, observer: Observer, grid: StartGrid = HALF_HOURS, deadline: float = math.inf
) -> OnDayLimit | None:
    """The LP at its lowest cap, or None if it ran out of time."""
    observer.solving_lowest_lp(grid.start_min)
    try:
        return on_day_limit(fleet.days, fleet.durations, None, grid=grid, deadline=deadline)
    except RuntimeError:
        return None


def fine_limit(fleet: Fleet, observer: Observer, deadline: float) -> OnDayLimit | None:
    """The quarter-hour LP at its lowest cap, by the safety `deadline` (monotonic); None if it
    ran out of time."""
    return lowest_limit(fleet, observer, FINE_GRID, deadline)


def fine_in_time(run: RebalanceRun) -> bool:
    """Whether the safety deadline leaves the quarter-hour LP its time (only a machine far too
    slow runs short)."""
    return run.deadline - time.monotonic() >= FINE_LP_NEEDS_S


def plan_guided(run: RebalanceRun, limit: OnDayLimit, goal: float, work: Work) -> Plan:
    """The plan following the LP's starts, runs then moved off the busiest minutes until the
    peak is at most `goal` or `work` is done."""
    fleet = run.fleet
    run.observer.stage(
        f"following the on-day LP's starts at a cap of {limit.cap:.2f}, then moving runs off "
        f"the peak for up to {work.left:,} tries, toward {goal:g}"
    )
    slots = realise(fleet.days, fleet.lengths, limit)
    placed = slots >= 0
    load = planned_load(fleet.days[placed], fleet.lengths[placed] * BIN_S, slots[placed])
    # Runs the LP's rounded starts left out, if any, go where the load grows least.
    for members, slot_of in place_peak_first(load, fleet, np.flatnonzero(~placed), run.rng):
        slots[members] = slot_of
    run.observer.searching(work.left, goal)
    if run.uses("breakout"):
        lower_peak(load, fleet.days, fleet.lengths, slots, work, goal)
    return Plan(slots, load)


def plan_if_fits(run: RebalanceRun, limit: OnDayLimit, target: float, work: Work) -> Plan | None:
    """The plan following the LP's `limit`, if it gets under the target within `work`."""
    plan = plan_guided(run, limit, target, work)
    return plan if plan.peak <= target + 1e-9 else None


def search_asked_caps(
    days: np.ndarray,
    target: float,
    lowest: float,
    work: Work,
    plan_at: Callable[[float, Work], Plan | None],
    reserve: int = 0,
) -> Plan | None:
    """The plan under the target keeping the most runs on their day (of `days`) that the caps
    asked of the LP give, or None if none got under. `plan_at(asked cap, work)` is the plan from
    the LP asked for that cap if it gets under the target within that work, else None.

    The asked cap is searched for by halving, between a cap whose plan fits (at first the LP's
    lowest, `lowest`, assumed) and one whose plan does not (at first the target): first the
    target less what realising usually adds, or, with no room for that margin, a cap a tenth of
    the way up from the lowest (just above its lowest cap the LP's share on their day climbs
    steeply). It stops when the two are ASKED_RESOLUTION of a run apart or `work` is spent,
    `reserve` tries short of it while no plan fits (the caller's for a plan at the lowest cap);
    of the plans that fit, the one with the most runs on their day wins.
    """

    def share() -> Work:
        kept = reserve if best is None else 0
        return work.share(min(ASKED_TRIES, work.left - kept))

    fits, over = lowest, target
    first = target - realising_margin(target)
    asked = first if first > lowest + 1e-6 else lowest + 0.1 * (target - lowest)
    best: Plan | None = None
    # A try with too little search would only waste its LP solve.
    while over - fits > ASKED_RESOLUTION and share().left >= MIN_SEARCH_TRIES and not work.done:
        part = share()
        plan = plan_at(asked, part)
        work.spend(part.used)
        if plan is None:
            over = asked
        else:
            fits = asked
            if best is None or on_day_share(days, plan.slots) >= on_day_share(days, best.slots):
                best = plan
        asked = (fits + over) / 2
    return best


def plan_asked(
    run: RebalanceRun,
    target: float,
    lowest: float,
    work: Work,
    reserve: int = 0,
    grid: StartGrid = HALF_HOURS,
) -> Plan | None:
    """`search_asked_caps` with plans from the LP on `grid` (whose lowest cap is `lowest`)."""
    fleet = run.fleet

    def plan_at(asked: float, part: Work) -> Plan | None:
        try:
            limit = on_day_limit(
                fleet.days, fleet.durations, asked, lowest, grid, deadline=run.deadline
            )
        except RuntimeError:  # out of time: no plan from this cap
            return None
        return plan_if_fits(run, limit, target, part)

    return search_asked_caps(fleet.days, target, lowest, work, plan_at, reserve)


def plan_for_share(run: RebalanceRun, target: float, limit: OnDayLimit) -> Plan | None:
    """A plan under the target following `limit`, the LP at the cap, or else the LP asked for
    caps under it, its runs then pulled onto their day; None if no plan fit within the work."""
    if run.out_of_time:
        return None
    work = Work(search_tries(run.fleet.size), run.deadline)
    # The LP at the cap keeps the most on their day: when its plan fits (as it often does with
    # room to spare, in a few seconds) no asked cap's can do better.
    plan = None
    if run.uses("at_cap"):
        part = work.share(ASKED_TRIES)
        plan = plan_if_fits(run, limit, target, part)
        work.spend(part.used)
    if plan is None and run.uses("asked_caps"):
        plan = plan_asked(run, target, limit.lowest, work)
    if plan is not None and run.uses("back_on_day"):
        pull_onto_their_day(plan, run.fleet, np.arange(run.fleet.size), target, run.rng)
    return plan
