"""The first plan: kept slots that still fit, then the rest placed day by day under the target.

A schedule keeps its current slot when its kind allows it and the kept load stays under the
target there. The rest are water-filled at minute resolution: daily runs laid flat first; then
day by day, the busiest day first, each day's runs on the day itself (shortest first, so that
the fewest leave), then its spill into the window's edges, each run taking the latest start
that stays under the target; what fits nowhere goes where the load grows least.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from scheduler.planning.fleet import Fleet, Plan, allowed_slots
from scheduler.planning.observer import Observer
from scheduler.planning.water_fill import PlacementMode, fill, groups, spread_by_tenant
from scheduler.planning.week import (
    DAILY,
    DAY_BINS,
    WEEK_BINS,
    add_schedules,
    span_bins,
)


@dataclass(frozen=True)
class FirstPlan:
    """The day-by-day plan, which schedules had a slot their kind allows, and which were placed
    anew (the others kept theirs)."""

    plan: Plan
    had_slot: np.ndarray  # bool per schedule
    placed_anew: np.ndarray  # indices


def plan_day_by_day(
    fleet: Fleet,
    current: np.ndarray,
    target: float,
    observer: Observer,
    rng: np.random.Generator,
) -> FirstPlan:
    """The kept slots that fit under the target, the rest placed day by day; the observer hears
    how many of those are placed as it goes."""
    had_slot = allowed_slots(fleet.days, current)
    keep = had_slot.copy()
    load = np.zeros(WEEK_BINS)
    add_schedules(load, fleet.days[keep], current[keep], fleet.durations[keep])
    _evict_over_target(load, fleet, current, keep, target)
    slots = np.where(keep, current, -1)
    todo = np.flatnonzero(~keep)
    done = 0
    for members, slot_of in _place_all(load, fleet, todo, target, rng):
        slots[members] = slot_of
        done += members.size
        observer.progress(done, todo.size)
    return FirstPlan(Plan(slots, load), had_slot, todo)


def _evict_over_target(
    load: np.ndarray, fleet: Fleet, slots: np.ndarray, keep: np.ndarray, target: float
) -> None:
    """Drop kept slots until the kept load fits under the target, the longest runs first.

    Only schedules touching an overloaded minute are reconsidered; they are re-admitted one by
    one, shortest first, while they fit.
    """
    if load.max() <= target:
        return
    days, durations = fleet.days, fleet.durations
    start, length = span_bins(slots, durations)
    over = np.concatenate((load > target, load > target)).astype(np.int64)
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
        if load[covered].max() + 1 <= target:
            np.add.at(load, covered, 1.0)
            keep[i] = True


def _place_all(
    load: np.ndarray, fleet: Fleet, todo: np.ndarray, target: float, rng: np.random.Generator
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Place the schedules in `todo` into the load; yield (members, their slots) as it goes.

    Daily runs go first, longest first: the same on every day, they are best laid flat. Then
    the weekly runs, longest first, in three passes: on their chosen day without going over
    the target; what did not fit, anywhere in their window without going over it (nearest
    the day first); what still did not fit, wherever the load grows least. The first pass
    fills every day before any run leaves its day, so a run leaves only for want of room.
    """
    days, lengths = fleet.days, fleet.lengths
    daily = todo[days[todo] == DAILY]
    weekly = todo[days[todo] != DAILY]
    for members in groups(daily, -lengths[daily]):
        members = spread_by_tenant(members, fleet.tenants)
        length = int(lengths[members[0]])
        got = fill(load, DAILY, length, members.size, PlacementMode.DAILY, target, rng)
        rest = fill(load, DAILY, length, members.size - got.size, PlacementMode.DAILY, None, rng)
        yield members, np.concatenate((np.sort(got), np.sort(rest)))
    waiting: list[np.ndarray] = []
    yield from _place_weekly(load, fleet, weekly, target, rng, waiting)
    # What fits nowhere under the target goes wherever the load grows least.
    for members in waiting:
        day, length = int(days[members[0]]), int(lengths[members[0]])
        got = fill(load, day, length, members.size, PlacementMode.WINDOW, None, rng)
        yield members, np.sort(got)


def _place_weekly(
    load: np.ndarray,
    fleet: Fleet,
    weekly: np.ndarray,
    target: float,
    rng: np.random.Generator,
    waiting: list[np.ndarray],
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Day by day, the busiest first: a busy day claims its own day, then its spill claims the
    edges of the neighbouring days, before those days' own runs are placed around them. What
    fits nowhere under the target is left in `waiting`."""
    days, lengths = fleet.days, fleet.lengths
    work = np.bincount(days[weekly], weights=lengths[weekly], minlength=7)
    for day in np.argsort(-work, kind="stable"):
        of_day = weekly[days[weekly] == day]
        spilled: list[np.ndarray] = []
        # Shortest first on the day: when not all fit, the longest leave, each freeing the most
        # room, so the fewest schedules leave their day.
        for members in groups(of_day, lengths[of_day]):
            members = spread_by_tenant(members, fleet.tenants)
            length = int(lengths[members[0]])
            got = fill(load, int(day), length, members.size, PlacementMode.ON_DAY, target, rng)
            yield members[: got.size], np.sort(got)
            if got.size < members.size:
                spilled.append(members[got.size :])
        for members in spilled[::-1]:
            length = int(lengths[members[0]])
            got = fill(load, int(day), length, members.size, PlacementMode.WINDOW, target, rng)
            yield members[: got.size], np.sort(got)
            if got.size < members.size:
                waiting.append(members[got.size :])
