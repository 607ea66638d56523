"""Putting weekly runs placed off their chosen day back onto it: where the load there has room,
and, for a plan under the cap still short of the LP's share, where others can make room."""

from __future__ import annotations

import numpy as np

from scheduler.planning.context import RebalanceRun, Work, search_tries
from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.lp_guided import raise_on_day_share
from scheduler.planning.on_day_limit import OnDayLimit
from scheduler.planning.water_fill import PlacementMode, fill, groups
from scheduler.planning.week import BIN_S, DAILY, WEEK_BINS, add_spans, on_their_day

#: A plan under the cap keeping this share of weekly schedules fewer on their day than the LP's
#: most is made again following the LP's starts, the better kept: the day-by-day plan lays daily
#: runs flat and fills the busiest day first. Half of it is the margin a plan already made must
#: be beaten by, so that a rebalance does not churn it for a few schedules.
SHARE_SHORTFALL = 0.01


def pull_onto_their_day(
    plan: Plan, fleet: Fleet, movable: np.ndarray, limit: float, rng: np.random.Generator
) -> None:
    """Move runs placed off their chosen day back onto it wherever the load there stays under
    `limit`, without raising the load above it or above what it was anywhere.

    A plan minding the peak first spreads every day's runs over its whole window, also on quiet
    days with room to spare; this gives those runs back their day. Runs of one day and length
    move together; if putting the ones that must stay back where they were would raise the load
    somewhere (they may overlap the moved ones), that group is left as it was.
    """
    days, lengths, slots, load = fleet.days, fleet.lengths, plan.slots, plan.load
    weekly = movable[days[movable] != DAILY]
    off = weekly[~on_their_day(days[weekly], slots[weekly])]
    for members in groups(off, days[off].astype(np.int64) * WEEK_BINS + lengths[off]):
        day, length = int(days[members[0]]), int(lengths[members[0]])
        before = load.copy()
        old = slots[members] // BIN_S
        add_spans(load, old, length, -1.0)
        got = fill(load, day, length, members.size, PlacementMode.ON_DAY, limit, rng)
        add_spans(load, old[got.size :], length)
        if (load > np.maximum(before, limit) + 1e-9).any():
            load[:] = before
            continue
        slots[members[: got.size]] = got


def make_room_on_their_day(
    run: RebalanceRun, plan: Plan, share: float, target: float, limit: OnDayLimit, kept: bool
) -> Plan:
    """The plan with runs off their day (`share` on it) put back onto it, making room (on a
    copy), until within half of SHARE_SHORTFALL of `limit`'s share or the tries of a re-plan's
    searches are spent; a plan mostly `kept` from before changes only if that gains a clear
    margin, so that a rebalance of a plan already made does not churn it."""
    if plan.peak > target + 1e-9 or run.out_of_time:
        return plan
    fleet = run.fleet
    weekly = fleet.weekly_count
    wanted = int(np.ceil((limit.share - SHARE_SHORTFALL / 2) * weekly))
    run.observer.stage(
        f"putting runs back onto their day where others make room: {share:.1%} on it, the LP's "
        f"most {limit.share:.1%}"
    )
    raised = plan.copy()
    gained = raise_on_day_share(
        raised.load,
        fleet.days,
        fleet.lengths,
        raised.slots,
        target,
        Work(search_tries(fleet.size, meetable=True), run.deadline),
        wanted,
    )
    if gained and (not kept or gained > SHARE_SHORTFALL / 2 * weekly):
        return raised
    return plan
