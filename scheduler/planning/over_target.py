"""Re-planning a fleet the day-by-day plan put over the target, from the on-day LP's starts.

When the target can be met, the LP is asked for caps under it (`plan_asked`): of plans that
fit, those keep the most runs on their day. If none gets under, the LP at the cap itself may
still give a plan that does (with no room above the lowest cap for what realising adds, it goes
first). Else, or if the target cannot be met, the plan follows the LP at its lowest cap. The
plan minding the peak alone serves only where the LP ran out of time.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from scheduler.planning.context import MIN_SEARCH_TRIES, RebalanceRun, Work, search_tries
from scheduler.planning.fleet import Plan
from scheduler.planning.lp_plans import (
    FINE_GRID,
    REALISING_MARGIN,
    announce_lowest,
    fine_in_time,
    fine_limit,
    fine_wanted,
    lowest_limit,
    plan_asked,
    plan_guided,
    plan_if_fits,
    realising_margin,
)
from scheduler.planning.on_day_limit import HALF_HOURS, OnDayLimit, StartGrid
from scheduler.planning.peak_first import plan_peak_first


@dataclass(frozen=True)
class LowestCap:
    """The LP's lowest cap the plans aim from, on the grid that reaches lower."""

    cap: float
    grid: StartGrid
    limit: OnDayLimit | None  # the LP's starts at that cap, if solved yet
    fine: OnDayLimit | None  # the quarter-hour LP at its lowest, if solved


def asks_caps(meetable: bool, target: float, lowest: LowestCap) -> bool:
    """Whether caps under the target are asked of the LP. Only for a target that can be met;
    on the quarter-hour grid each asked cap is a slow LP, so there only with room above its
    lowest cap for what realising adds (else the plan at the lowest cap gets all the time, and
    runs go back onto their day afterwards, under the target)."""
    room = target - realising_margin(target) > lowest.cap
    return meetable and (lowest.grid == HALF_HOURS or room)


def replan_over_target(
    run: RebalanceRun,
    target: float,
    meetable: bool,
    at_cap_lp: OnDayLimit | None,
    fine_ahead: Future[OnDayLimit | None] | None = None,
) -> Plan:
    """A plan for a fleet the day-by-day plan put over the target, its searches sharing the
    tries `search_tries` gives.

    `at_cap_lp`, the on-day LP at the cap that judges the plan, if solved: its lowest cap is
    the one to ask above, and when it could not meet the cap it is the LP at that lowest cap.
    `fine_ahead`: the quarter-hour LP at its lowest cap, if already under way.
    """
    lowest = _lowest_cap(run, target, at_cap_lp, fine_ahead)
    if lowest is None:
        return plan_peak_first(run.fleet, run.rng)
    # Past the safety deadline, the least search, not cut short: a plan just realised from the
    # LP's starts can sit several runs above its cap.
    if run.out_of_time:
        work = Work(MIN_SEARCH_TRIES)
    else:
        work = Work(search_tries(run.fleet.size, meetable), run.deadline)
    at_cap = at_cap_lp if meetable and at_cap_lp is not None and at_cap_lp.feasible else None
    if at_cap is not None and not run.uses("at_cap"):
        at_cap = None
    plan = _plan_at_or_under_cap(run, target, meetable, at_cap, lowest, work)
    if plan is not None:
        return plan
    return _plan_at_lowest_cap(run, target, lowest, at_cap, work)


def _lowest_cap(
    run: RebalanceRun,
    target: float,
    at_cap_lp: OnDayLimit | None,
    fine_ahead: Future[OnDayLimit | None] | None,
) -> LowestCap | None:
    """The LP's lowest cap, from the LP at the cap or solved now, and the quarter-hour LP's where
    it is wanted, in time, and lower; None if the LP ran out of time."""
    lowest = at_cap_lp if at_cap_lp is not None and not at_cap_lp.feasible else None
    lowest_cap = at_cap_lp.lowest if at_cap_lp is not None else float("nan")
    if np.isnan(lowest_cap):
        announce_lowest(run.observer, HALF_HOURS)
        lowest = lowest_limit(run.fleet, run.observer)
        if lowest is None:
            return None
        lowest_cap = lowest.cap
    fine: OnDayLimit | None = None
    in_time = fine_ahead is not None or fine_in_time(run)
    if fine_wanted(target, lowest_cap) and in_time and run.uses("quarter_hour"):
        fine = _quarter_hour_limit(run, fine_ahead)
        # Its periods are finer but its classes coarser: on a fleet of widely spread lengths
        # the half-hour LP can reach lower.
        if fine is not None and fine.cap < lowest_cap:
            return LowestCap(fine.cap, FINE_GRID, fine, fine)
    return LowestCap(lowest_cap, HALF_HOURS, lowest, fine)


def _quarter_hour_limit(
    run: RebalanceRun, fine_ahead: Future[OnDayLimit | None] | None
) -> OnDayLimit | None:
    """The quarter-hour LP at its lowest cap: the one under way, or solved now."""
    if fine_ahead is not None:
        run.observer.stage(
            "waiting for the on-day LP at its lowest cap, starts every "
            f"{FINE_GRID.start_min} minutes"
        )
        return fine_ahead.result()
    announce_lowest(run.observer, FINE_GRID)
    return fine_limit(run.fleet, run.observer, run.deadline)


def _plan_at_or_under_cap(
    run: RebalanceRun,
    target: float,
    meetable: bool,
    at_cap: OnDayLimit | None,
    lowest: LowestCap,
    work: Work,
) -> Plan | None:
    """A plan under the target from the LP at the cap (`at_cap`) or asked for caps under it,
    else None.

    With no room above the lowest cap for what realising usually adds, the asked caps keep few
    more on their day than the lowest (their share climbs steeply just above it). Where the
    margin is mostly its two whole runs, the plan at the cap itself, over the target at first,
    often gets under it with moves off the busiest minutes given the tries: it goes first, with
    two thirds of them; the last third is the lowest cap's.
    """
    total = work.allowed
    margin_room = target - realising_margin(target) > lowest.cap
    cap_first = at_cap is not None and not margin_room and target * REALISING_MARGIN <= 2
    if cap_first and at_cap is not None:
        part = work.share(total * 2 // 3)
        plan = plan_if_fits(run, at_cap, target, part)
        work.spend(part.used)
        if plan is not None:
            return plan
    if asks_caps(meetable, target, lowest) and run.uses("asked_caps"):
        # While no asked cap's plan fits, a third of the tries is kept for the lowest cap's.
        plan = plan_asked(run, target, lowest.cap, work, total // 3, lowest.grid)
        if plan is not None:
            return plan
    if at_cap is not None and not cap_first:
        # No asked cap's plan fit; the plan at the cap may still get under, with moves off the
        # busiest minutes: half the tries left, the rest the lowest cap's.
        part = work.share(max(MIN_SEARCH_TRIES, work.left // 2))
        plan = plan_if_fits(run, at_cap, target, part)
        work.spend(part.used)
        return plan
    return None


def _plan_at_lowest_cap(
    run: RebalanceRun,
    target: float,
    lowest: LowestCap,
    at_cap: OnDayLimit | None,
    work: Work,
) -> Plan:
    """The plan following the LP at its lowest cap, with the tries left (at least a third of
    the searches' tries). Below the bound the target is the bound itself: a plan that reaches
    it need search no further."""
    limit = lowest.limit
    if not run.uses("lowest_cap"):
        return plan_peak_first(run.fleet, run.rng)
    if limit is None:  # the LP at the cap met it: the lowest cap's starts are solved now
        # Out of time, the quarter-hour LP at its lowest, if solved, is near enough, else the
        # LP at the cap.
        announce_lowest(run.observer, lowest.grid)
        limit = lowest_limit(run.fleet, run.observer, lowest.grid, run.deadline)
        limit = limit or lowest.fine or at_cap
        if limit is None:
            return plan_peak_first(run.fleet, run.rng)
    tries = max(work.allowed // 3, work.left, MIN_SEARCH_TRIES)
    return plan_guided(run, limit, target, Work(tries, work.deadline))
