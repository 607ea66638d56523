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

import numpy as np

from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.water_fill import PlacementMode, fill, groups, spread_by_tenant
from scheduler.planning.week import BIN_S, DAILY, add_spans, daily_starts, on_their_day


def level_load(
    plan: Plan,
    fleet: Fleet,
    movable: np.ndarray,
    limit: float,
    rng: np.random.Generator,
    deadline: float = math.inf,
) -> int:
    """Re-fill the `movable` runs at the lowest load, never above `limit` nor the plan's own
    peak, keeping on their day those that are; `plan` is updated. It stops at `deadline`
    (monotonic), the rebalance's. Returns the groups moved."""
    days, lengths = fleet.days, fleet.lengths
    weekly = movable[days[movable] != DAILY]
    on_day = weekly[on_their_day(days[weekly], plan.slots[weekly])]
    daily = movable[days[movable] == DAILY]
    kinds = np.concatenate((on_day, daily))
    # Longest first; a day's groups together. Daily runs count as day 7.
    key = -lengths[kinds] * 8 + np.where(days[kinds] == DAILY, 7, days[kinds])
    ceiling = min(limit, plan.peak)
    moved = 0
    for members in groups(kinds, key):
        if time.monotonic() >= deadline:
            break
        members = spread_by_tenant(members, fleet.tenants)
        moved += _refill(
            plan, int(days[members[0]]), int(lengths[members[0]]), members, ceiling, rng
        )
    return moved


def _refill(
    plan: Plan,
    day: int,
    length: int,
    members: np.ndarray,
    ceiling: float,
    rng: np.random.Generator,
) -> int:
    """Take one group out and fill it back in at the lowest load; keep that if every run fits
    under `ceiling` and the load is more level. Returns 1 if kept."""
    load, slots = plan.load, plan.slots
    before = load.copy()
    old = slots[members] // BIN_S
    starts = daily_starts(old) if day == DAILY else old
    add_spans(load, starts, length, -1.0)
    mode = PlacementMode.DAILY if day == DAILY else PlacementMode.LEVEL_ON_DAY
    got = fill(load, day, length, members.size, mode, ceiling, rng)
    squares = float(np.square(load).sum())
    if got.size < members.size or squares >= float(np.square(before).sum()) - 1e-6:
        load[:] = before
        return 0
    slots[members] = np.sort(got)
    return 1
