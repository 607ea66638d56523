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
from scheduler.planning.context import FINISHING_S, MIN_SEARCH_S, RebalanceRun, search_budget
from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.lp_guided import lower_peak, realise
from scheduler.planning.observer import Observer
from scheduler.planning.on_day_limit import HALF_HOURS, OnDayLimit, StartGrid, on_day_limit
from scheduler.planning.peak_first import place_peak_first
from scheduler.planning.week import BIN_S, on_day_share, planned_load

#: What realising the LP's starts adds to its cap, as a share of the cap (plus two runs).
REALISING_MARGIN = 0.0025
#: How finely (in runs in flight) to search for the highest cap to ask the LP for whose plan
#: fits, and the seconds each plan's search may take.
ASKED_RESOLUTION = 0.25
ASKED_TRY_BUDGET_S = 6.0
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
    """The quarter-hour LP at its lowest cap, leaving the searches their least time before
    `deadline`; None if it ran out of time."""
    return lowest_limit(fleet, observer, FINE_GRID, deadline - FINISHING_S - MIN_SEARCH_S)


def plan_guided(run: RebalanceRun, limit: OnDayLimit, goal: float, budget_s: float) -> Plan:
    """The plan following the LP's starts, runs then moved off the busiest minutes until the
    peak is at most `goal` or `budget_s` seconds pass."""
    fleet = run.fleet
    run.observer.stage(
        f"following the on-day LP's starts at a cap of {limit.cap:.2f}, then moving runs off "
        f"the peak for up to {budget_s:.0f} s, toward {goal:g}"
    )
    slots = realise(fleet.days, fleet.lengths, limit)
    placed = slots >= 0
    load = planned_load(fleet.days[placed], fleet.lengths[placed] * BIN_S, slots[placed])
    # Runs the LP's rounded starts left out, if any, go where the load grows least.
    for members, slot_of in place_peak_first(load, fleet, np.flatnonzero(~placed), run.rng):
        slots[members] = slot_of
    run.observer.searching(budget_s, goal)
    lower_peak(load, fleet.days, fleet.lengths, slots, budget_s, goal)
    return Plan(slots, load)


def plan_if_fits(
    run: RebalanceRun, limit: OnDayLimit, target: float, budget_s: float
) -> Plan | None:
    """The plan following the LP's `limit`, if it gets under the target within `budget_s`
    seconds of search."""
    plan = plan_guided(run, limit, target, budget_s)
    return plan if plan.peak <= target + 1e-9 else None


def search_asked_caps(
    days: np.ndarray,
    target: float,
    lowest: float,
    deadline: float,
    plan_at: Callable[[float, float], Plan | None],
    reserve_s: float = 0.0,
) -> Plan | None:
    """The plan under the target keeping the most runs on their day (of `days`) that the caps
    asked of the LP give, or None if none got under. `plan_at(asked cap, seconds of search)` is
    the plan from the LP asked for that cap if it gets under the target, else None.

    The asked cap is searched for by halving, between a cap whose plan fits (at first the LP's
    lowest, `lowest`, assumed) and one whose plan does not (at first the target): first the
    target less what realising usually adds, or, with no room for that margin, a cap a tenth of
    the way up from the lowest (just above its lowest cap the LP's share on their day climbs
    steeply). It stops when the two are ASKED_RESOLUTION of a run apart or `deadline`
    (monotonic) passes, `reserve_s` before it while no plan fits (the caller's time for a plan
    at the lowest cap); of the plans that fit, the one with the most runs on their day wins.
    """

    def budget() -> float:
        reserve = reserve_s if best is None else 0.0
        return min(ASKED_TRY_BUDGET_S, deadline - reserve - time.monotonic())

    fits, over = lowest, target
    first = target - realising_margin(target)
    asked = first if first > lowest + 1e-6 else lowest + 0.1 * (target - lowest)
    best: Plan | None = None
    # A try with less than a second to search would only waste its LP solve.
    while over - fits > ASKED_RESOLUTION and budget() >= 1.0:
        plan = plan_at(asked, budget())
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
    deadline: float,
    reserve_s: float = 0.0,
    grid: StartGrid = HALF_HOURS,
) -> Plan | None:
    """`search_asked_caps` with plans from the LP on `grid` (whose lowest cap is `lowest`)."""
    fleet = run.fleet

    def plan_at(asked: float, budget_s: float) -> Plan | None:
        try:
            limit = on_day_limit(fleet.days, fleet.durations, asked, lowest, grid)
        except RuntimeError:  # out of time: no plan from this cap
            return None
        return plan_if_fits(run, limit, target, budget_s)

    return search_asked_caps(fleet.days, target, lowest, deadline, plan_at, reserve_s)


def plan_for_share(run: RebalanceRun, target: float, limit: OnDayLimit) -> Plan | None:
    """A plan under the target following `limit`, the LP at the cap, or else the LP asked for
    caps under it, its runs then pulled onto their day; None if no plan fit in the time before
    the deadline."""
    started = time.monotonic()
    total = min(search_budget(run.fleet.size), run.deadline - FINISHING_S - started)
    if total < MIN_SEARCH_S:
        return None
    # The LP at the cap keeps the most on their day: when its plan fits (as it often does with
    # room to spare, in a few seconds) no asked cap's can do better.
    plan = plan_if_fits(run, limit, target, min(ASKED_TRY_BUDGET_S, total))
    if plan is None:
        plan = plan_asked(run, target, limit.lowest, started + total)
    if plan is not None:
        pull_onto_their_day(plan, run.fleet, np.arange(run.fleet.size), target, run.rng)
    return plan
