"""A rebalance: the whole fleet re-planned under the cap, its phases in order, within its time.

1. Judge: the lower bound, and in a second thread the on-day LP at the cap rounded
   down, which says how many weekly runs could stay on their day. The target is that cap, or
   the bound when no plan can meet the cap.
2. The first plan, day by day (`day_by_day`), which needs only the target: the LP at the cap,
   then the quarter-hour LP a plan over the target would want, are solved in the second
   thread meanwhile.
3. A better plan: over the target, one from the LP's starts (`over_target`), the lower peak
   kept; under it but short of the LP's share on their day, one from the LP at the cap
   (`lp_plans.plan_for_share`), kept if clearly better. Then runs left off their day go back
   onto it wherever the load there stays under the target (for a plan over it, its own peak).
4. A plan under the cap still short of the LP's share puts runs back onto their day making
   room for them (`back_on_their_day`).
5. The load levelled (`levelling`) and smoothed (`smoothing`).

`disabled` leaves strategies out (`context.STRATEGIES`), to measure what each one gains.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from scheduler.planning.back_on_their_day import (
    SHARE_SHORTFALL,
    make_room_on_their_day,
    pull_onto_their_day,
)
from scheduler.planning.context import (
    STRATEGIES,
    TIME_LIMIT_S,
    RebalanceRun,
    smoothing_tries,
)
from scheduler.planning.day_by_day import FirstPlan, plan_day_by_day
from scheduler.planning.fleet import Plan, allowed_slots, read_fleet, tenant_stacking
from scheduler.planning.levelling import (
    ROOM_BELOW_LP,
    ROOM_FROM,
    ROOM_SHARE,
    level_load,
    room_on_busy_days,
)
from scheduler.planning.lower_bound import LowerBound, lower_bound
from scheduler.planning.lp_plans import fine_in_time, fine_limit, fine_wanted, plan_for_share
from scheduler.planning.observer import QUIET, Observer
from scheduler.planning.on_day_limit import OnDayLimit, on_day_limit
from scheduler.planning.over_target import replan_over_target
from scheduler.planning.peak_first import plan_peak_first
from scheduler.planning.smoothing import smooth_load
from scheduler.planning.water_fill import PHASES_SEED
from scheduler.planning.week import on_day_share


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
    strategies_reached: frozenset[str] = frozenset()  # the ones it came to (context.STRATEGIES)

    @property
    def peak_over_bound(self) -> float:
        return self.peak / self.lower_bound if self.lower_bound > 0 else float("nan")


@dataclass(frozen=True)
class Judgement:
    """What the plan is judged by: the bound, the on-day LP at the cap rounded down (None if
    not asked for or out of time), and the target the load must stay under."""

    bound: LowerBound
    limit: OnDayLimit | None
    lp_failed: bool  # the LP ran out of time: so would the others, and the plan goes without
    target: float
    meetable: bool  # the cap is at or above the bound


def rebalance(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    tenant_id: np.ndarray | Iterable[Hashable],
    current_slot: np.ndarray | Iterable[int],
    cap: float,
    *,
    observer: Observer = QUIET,
    with_limit: bool = True,
    time_limit_s: float = TIME_LIMIT_S,
    disabled: frozenset[str] = frozenset(),
) -> PlanResult:
    """Re-plan a whole fleet. Arrays are per schedule; day_of_week holds None or -1 for daily
    schedules; current_slot holds -1 for a schedule without a slot yet.

    A schedule keeps its current slot when its kind allows that slot and the kept load stays
    under the target there; the others are placed as the module docstring says. The LPs that
    judge the plan (the best on-day share, the hourly bound) run only `with_limit`. The
    `observer` hears each stage as it starts, and the count placed day by day. Its searches
    count their work, so the plan does not depend on the machine's speed; `time_limit_s`
    (see TIME_LIMIT_S) is a safety limit past which they stop where they are. `disabled`
    names strategies to leave out (`context.STRATEGIES`).
    """
    unknown = disabled - STRATEGIES
    if unknown:
        raise ValueError(f"unknown strategies: {', '.join(sorted(unknown))}")
    deadline = time.monotonic() + time_limit_s
    fleet, current = read_fleet(day_of_week, duration_s, tenant_id, current_slot)
    rng = np.random.default_rng(PHASES_SEED)
    run = RebalanceRun(fleet, observer, rng, deadline, frozenset(disabled))
    with _lp_thread() as lp_thread:
        # The LPs that judge the plan are solved in the LP thread while the first plan is
        # made, which needs only the bound.
        at_cap_lp = _submit_at_cap_lp(run, cap, with_limit, lp_thread)
        run.observer.stage("the lower bound: an LP over the hours of the week")
        bound = lower_bound(fleet.days, fleet.durations, hourly=with_limit)
        fine_ahead: Future[OnDayLimit | None] | None
        fine_ahead = _fine_lp_ahead(run, cap, bound, at_cap_lp, lp_thread)
        first = _first_plan(run, current, _target(cap, bound))
        judgement = _judge(run, cap, bound, at_cap_lp)
        wanted = _fine_wanted(judgement, cap) and run.uses("quarter_hour")
        if not wanted or not fine_in_time(run):
            fine_ahead = None
        plan, placed_anew = _better_plan(run, first, judgement, fine_ahead)
    share = on_day_share(fleet.days, plan.slots)
    limit = judgement.limit
    short = limit is not None and limit.feasible and limit.share - share > SHARE_SHORTFALL
    if short and limit is not None and run.uses("make_room"):
        kept = placed_anew.size < fleet.size
        plan = make_room_on_their_day(run, plan, share, judgement.target, limit, kept)
        share = on_day_share(fleet.days, plan.slots)
    _level(run, plan, placed_anew, share, judgement)
    share = on_day_share(fleet.days, plan.slots)
    return _result(run, current, first, plan, share, judgement, cap)


def _first_plan(run: RebalanceRun, current: np.ndarray, target: float) -> FirstPlan:
    """The day-by-day plan; with that strategy left out, the plan minding the peak alone."""
    fleet = run.fleet
    if not run.uses("day_by_day"):
        return FirstPlan(
            plan_peak_first(fleet, run.rng),
            allowed_slots(fleet.days, current),
            np.arange(fleet.size),
        )
    run.observer.stage(f"placing {fleet.size:,} schedules day by day under {target:g}")
    return plan_day_by_day(fleet, current, target, run.observer, run.rng)


def _level(
    run: RebalanceRun, plan: Plan, placed_anew: np.ndarray, share: float, judgement: Judgement
) -> None:
    """The third aim: room on the busiest days for a few runs off their day, then every run
    placed anew at the lowest load its day allows; never above the target."""
    fleet, limit = run.fleet, judgement.limit
    floor = share - ROOM_SHARE
    if limit is not None and limit.feasible:
        floor = max(floor, limit.share - ROOM_BELOW_LP)
    leave = int(np.floor((share - floor) * fleet.weekly_count + 1e-9))
    ceiling = judgement.target
    roomy = ceiling >= ROOM_FROM * judgement.bound.value
    if leave > 0 and roomy and plan.peak <= ceiling + 1e-9 and run.uses("room_on_busy_days"):
        run.observer.stage(f"room on the busiest days: up to {leave:,} runs off their day")
        room_on_busy_days(plan, fleet, placed_anew, leave, ceiling, run.rng)
    if run.uses("levelling"):
        run.observer.stage(
            "levelling the load: runs placed anew at the lowest load their day allows"
        )
        level_load(plan, fleet, placed_anew, ceiling, run.rng, run.deadline)
    if run.uses("smoothing"):
        run.observer.stage("smoothing the load: runs moved one at a time to where it is lowest")
        tries = smoothing_tries(fleet.size)
        smooth_load(plan, fleet, placed_anew, min(ceiling, plan.peak), run.rng, tries)


@contextmanager
def _lp_thread() -> Iterator[ThreadPoolExecutor]:
    """A second thread for the LPs: HiGHS lets go of the interpreter while it solves, and a
    second core takes them. One the plan turns out not to need may finish after it returns:
    the thread is not waited for."""
    lp_thread = ThreadPoolExecutor(max_workers=1)
    try:
        yield lp_thread
    finally:
        lp_thread.shutdown(wait=False, cancel_futures=True)


def _submit_at_cap_lp(
    run: RebalanceRun, cap: float, with_limit: bool, lp_thread: ThreadPoolExecutor
) -> Future[OnDayLimit] | None:
    """The on-day LP at the cap rounded down, in the LP thread, if `with_limit`."""
    if not with_limit:
        return None
    fleet = run.fleet
    return lp_thread.submit(
        on_day_limit, fleet.days, fleet.durations, _rounded_down(cap), deadline=run.deadline
    )


def _rounded_down(cap: float) -> float:
    # The load is a whole number at every minute: no plan under the cap goes above the cap
    # rounded down, and the LP there bounds their share on their day the more tightly.
    return float(np.floor(cap + 1e-9))


def _target(cap: float, bound: LowerBound) -> float:
    """The cap the load must stay under: the cap rounded down, or when no plan can meet it,
    the bound (itself a whole number)."""
    return _rounded_down(cap) if cap >= bound.value else bound.value


def _judge(
    run: RebalanceRun, cap: float, bound: LowerBound, at_cap_lp: Future[OnDayLimit] | None
) -> Judgement:
    """The bound, and the on-day LP at the cap, waited for, if it was asked for."""
    limit = None
    lp_failed = False
    if at_cap_lp is not None:
        run.observer.stage(
            f"the most runs on their day under {_rounded_down(cap):g}: the on-day LP at the cap"
        )
        try:
            limit = at_cap_lp.result()
        except RuntimeError:  # out of time: the plan is left unjudged, not unmade
            lp_failed = True
    return Judgement(bound, limit, lp_failed, _target(cap, bound), cap >= bound.value)


def _fine_wanted(judgement: Judgement, cap: float) -> bool:
    """Whether a plan over the target would want the quarter-hour LP (`lp_plans.fine_wanted`)."""
    if judgement.limit is not None:
        lowest = judgement.limit.lowest
    else:
        lowest = judgement.bound.value if cap < judgement.bound.value else 0.0
    return not judgement.lp_failed and fine_wanted(judgement.target, lowest)


def _fine_lp_ahead(
    run: RebalanceRun,
    cap: float,
    bound: LowerBound,
    at_cap_lp: Future[OnDayLimit] | None,
    lp_thread: ThreadPoolExecutor,
) -> Future[OnDayLimit | None]:
    """The quarter-hour LP a plan over the target would want, solved in the LP thread beside
    the first plan once the LP at the cap says it is wanted (else None); it tells the
    observer nothing but that it solves."""

    def solve_if_wanted() -> OnDayLimit | None:
        limit, lp_failed = None, False
        if at_cap_lp is not None:
            # The LP thread takes its tasks in turn: the LP at the cap is solved by now.
            try:
                limit = at_cap_lp.result()
            except RuntimeError:
                lp_failed = True
        judgement = Judgement(bound, limit, lp_failed, _target(cap, bound), cap >= bound.value)
        wanted = _fine_wanted(judgement, cap) and "quarter_hour" not in run.disabled
        if not wanted or not fine_in_time(run):
            return None
        return fine_limit(run.fleet, run.observer, run.deadline)

    return lp_thread.submit(solve_if_wanted)


def _better_plan(
    run: RebalanceRun,
    first: FirstPlan,
    judgement: Judgement,
    fine_ahead: Future[OnDayLimit | None] | None,
) -> tuple[Plan, np.ndarray]:
    """(the plan, the schedules it placed anew): the first plan or a better one, runs then put
    back onto their day where the load allows."""
    target = judgement.target
    if first.plan.peak > target + 1e-9:
        return _replanned_over_target(run, first, judgement, fine_ahead)
    limit = judgement.limit
    if limit is not None and limit.feasible:
        return _replanned_for_share(run, first, target, limit)
    limit_here = max(target, first.plan.peak)
    if run.uses("back_on_day"):
        pull_onto_their_day(first.plan, run.fleet, first.placed_anew, limit_here, run.rng)
    return first.plan, first.placed_anew


def _replanned_over_target(
    run: RebalanceRun,
    first: FirstPlan,
    judgement: Judgement,
    fine_ahead: Future[OnDayLimit | None] | None,
) -> tuple[Plan, np.ndarray]:
    """The lower peak of the first plan and one from the LP's starts. A plan over the target
    has its own peak as the limit for runs put back onto their day: moving runs onto their day
    under it keeps the lowest peak there is."""
    target = judgement.target
    run.observer.stage(
        f"the day-by-day plan peaks at {first.plan.peak:.0f}, above {target:g}: planning "
        f"from the on-day LP"
    )
    if judgement.lp_failed:  # the last resort, whatever is left out
        other = plan_peak_first(run.fleet, run.rng)
    else:
        other = replan_over_target(run, target, judgement.meetable, judgement.limit, fine_ahead)
    plan, placed_anew = first.plan, first.placed_anew
    if other.peak < plan.peak:
        plan, placed_anew = other, np.arange(run.fleet.size)
    if run.uses("back_on_day"):
        pull_onto_their_day(plan, run.fleet, placed_anew, max(target, plan.peak), run.rng)
    return plan, placed_anew


def _replanned_for_share(
    run: RebalanceRun, first: FirstPlan, target: float, limit: OnDayLimit
) -> tuple[Plan, np.ndarray]:
    """The first plan, runs put back onto their day, or, if it keeps over SHARE_SHORTFALL fewer
    on their day than the LP could, one from the LP's starts with clearly more."""
    fleet = run.fleet
    if run.uses("back_on_day"):
        pull_onto_their_day(first.plan, fleet, first.placed_anew, target, run.rng)
    share = on_day_share(fleet.days, first.plan.slots)
    if limit.share - share <= SHARE_SHORTFALL:
        return first.plan, first.placed_anew
    run.observer.stage(
        f"the day-by-day plan keeps {share:.1%} on their day, the LP's most "
        f"{limit.share:.1%}: planning from the LP too"
    )
    other = plan_for_share(run, target, limit)
    # By a clear margin: a plan already made is not churned for a few schedules.
    if other is not None and on_day_share(fleet.days, other.slots) > share + SHARE_SHORTFALL / 2:
        return other, np.arange(fleet.size)
    return first.plan, first.placed_anew


def _result(
    run: RebalanceRun,
    current: np.ndarray,
    first: FirstPlan,
    plan: Plan,
    share: float,
    judgement: Judgement,
    cap: float,
) -> PlanResult:
    fleet, bound, limit = run.fleet, judgement.bound, judgement.limit
    return PlanResult(
        slot_s=plan.slots,
        moved=int((first.had_slot & (plan.slots != current)).sum()),
        peak=float(plan.load.max()) if plan.load.size else 0.0,
        lower_bound=bound.value,
        lower_bound_explanation=bound.explanation,
        daily_flat_bound=bound.daily_flat if bound.daily_flat is not None else float("nan"),
        on_day_share=share,
        max_on_day_share=limit.share if limit is not None else float("nan"),
        cap=float(cap),
        load=plan.load,
        tenant_stacking=tenant_stacking(fleet, plan.slots),
        strategies_reached=frozenset(run.reached),
    )
