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

from scheduler.planning.context import levelling_runs
from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.water_fill import PlacementMode, fill, groups, spread_by_tenant
from scheduler.planning.week import BIN_S, DAILY, add_spans, daily_starts, on_their_day

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
