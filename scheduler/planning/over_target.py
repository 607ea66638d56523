"""Re-planning a fleet the day-by-day plan put over the target, from the on-day LP's starts.

When the target can be met, the LP is asked for caps under it (`plan_asked`): of plans that
fit, those keep the most runs on their day. If none gets under, the LP at the cap itself may
still give a plan that does (with no room above the lowest cap for what realising adds, it goes
first). Else, or if the target cannot be met, the plan follows the LP at its lowest cap, and
last the plan minding the peak alone; the lowest peak is kept.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from scheduler.planning.context import (
    FINE_LP_NEEDS_S,
    FINISHING_S,
    MIN_SEARCH_S,
    RebalanceRun,
    search_budget,
)
from scheduler.planning.fleet import Plan
from scheduler.planning.lp_plans import (
    FINE_GRID,
    REALISING_MARGIN,
    announce_lowest,
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


@dataclass(frozen=True)
class SearchTime:
    """The time the searches of a re-plan share: from `started`, `total` seconds."""

    started: float
    total: float

    @property
    def ends(self) -> float:
        return self.started + self.total


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
    """A plan for a fleet the day-by-day plan put over the target, by the run's deadline.

    `at_cap_lp`, the on-day LP at the cap that judges the plan, if solved: its lowest cap is
    the one to ask above, and when it could not meet the cap it is the LP at that lowest cap.
    `fine_ahead`: the quarter-hour LP at its lowest cap, if already under way.
    """
    lowest = _lowest_cap(run, target, at_cap_lp, fine_ahead)
    if lowest is None:
        return plan_peak_first(run.fleet, run.rng)
    started = time.monotonic()
    budget = search_budget(run.fleet.size, meetable)
    times = SearchTime(
        started, min(budget, max(MIN_SEARCH_S, run.deadline - FINISHING_S - started))
    )
    at_cap = at_cap_lp if meetable and at_cap_lp is not None and at_cap_lp.feasible else None
    plan = _plan_at_or_under_cap(run, target, meetable, at_cap, lowest, times)
    if plan is not None:
        return plan
    return _plan_at_lowest_cap(run, target, lowest, at_cap, times)


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
    fine_in_time = fine_ahead is not None or run.deadline - time.monotonic() >= FINE_LP_NEEDS_S
    if fine_wanted(target, lowest_cap) and fine_in_time:
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
    times: SearchTime,
) -> Plan | None:
    """A plan under the target from the LP at the cap (`at_cap`) or asked for caps under it,
    else None.

    With no room above the lowest cap for what realising usually adds, the asked caps keep few
    more on their day than the lowest (their share climbs steeply just above it). Where the
    margin is mostly its two whole runs, the plan at the cap itself, over the target at first,
    often gets under it with moves off the busiest minutes given the time: it goes first, with
    two thirds of the time; the last third is the lowest cap's.
    """
    margin_room = target - realising_margin(target) > lowest.cap
    cap_first = at_cap is not None and not margin_room and target * REALISING_MARGIN <= 2
    if cap_first and at_cap is not None:
        plan = plan_if_fits(run, at_cap, target, times.total * 2 / 3)
        if plan is not None:
            return plan
    if asks_caps(meetable, target, lowest):
        # While no asked cap's plan fits, a third of the time is kept for the lowest cap's.
        plan = plan_asked(run, target, lowest.cap, times.ends, times.total / 3, lowest.grid)
        if plan is not None:
            return plan
    if at_cap is not None and not cap_first:
        # No asked cap's plan fit; the plan at the cap may still get under, with moves off the
        # busiest minutes: half the time left, the rest the lowest cap's.
        budget = max(MIN_SEARCH_S, (times.ends - time.monotonic()) / 2)
        return plan_if_fits(run, at_cap, target, budget)
    return None


def _plan_at_lowest_cap(
    run: RebalanceRun,
    target: float,
    lowest: LowestCap,
    at_cap: OnDayLimit | None,
    times: SearchTime,
) -> Plan:
    """The plan following the LP at its lowest cap, the rest of the time (at least a third of
    the searches' time, if the deadline allows), or the plan minding the peak alone if that is
    lower. Below the bound the target is the bound itself: a plan that reaches it need search
    no further."""
    limit = lowest.limit
    if limit is None:  # the LP at the cap met it: the lowest cap's starts are solved now
        # By the deadline, less the least search. Out of time, the quarter-hour LP at its
        # lowest, if solved, is near enough, else the LP at the cap.
        announce_lowest(run.observer, lowest.grid)
        deadline = run.deadline - FINISHING_S - MIN_SEARCH_S
        limit = lowest_limit(run.fleet, run.observer, lowest.grid, deadline)
        limit = limit or lowest.fine or at_cap
        if limit is None:
            return plan_peak_first(run.fleet, run.rng)
    now = time.monotonic()
    budget = max(times.total / 3, times.ends - now)
    budget = max(MIN_SEARCH_S, min(budget, run.deadline - FINISHING_S - now))
    plan = plan_guided(run, limit, target, budget)
    # The plan minding the peak alone rarely does better, but a fleet the LP's periods fit badly
    # (runs much longer than the window, say) is realised far above the LP's cap.
    if plan.peak > max(target, limit.cap * 1.01 + 2) + 1e-9:
        other = plan_peak_first(run.fleet, run.rng)
        if other.peak < plan.peak:
            return other
    return plan
