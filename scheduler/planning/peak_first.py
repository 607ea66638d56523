"""The plan minding the peak alone: every run, longest first, where the load is lowest in its
window (its day winning ties). The last resort when the cap cannot be met, and where runs the
LP's rounded starts left out go."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from scheduler.planning.fleet import Fleet, Plan
from scheduler.planning.water_fill import PlacementMode, fill, groups, spread_by_tenant
from scheduler.planning.week import DAILY, WEEK_BINS


def place_peak_first(
    load: np.ndarray, fleet: Fleet, todo: np.ndarray, rng: np.random.Generator
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Place the schedules in `todo` for the lowest peak; yield (members, their slots)."""
    days, lengths = fleet.days, fleet.lengths
    for members in groups(todo, -lengths[todo] * 8 + days[todo]):
        members = spread_by_tenant(members, fleet.tenants)
        day = int(days[members[0]])
        mode = PlacementMode.DAILY if day == DAILY else PlacementMode.WINDOW
        got = fill(load, day, int(lengths[members[0]]), members.size, mode, None, rng)
        yield members, np.sort(got)


def plan_peak_first(fleet: Fleet, rng: np.random.Generator) -> Plan:
    """The whole fleet placed minding the peak alone."""
    load = np.zeros(WEEK_BINS)
    slots = np.full(fleet.size, -1, dtype=np.int64)
    for members, slot_of in place_peak_first(load, fleet, np.arange(fleet.size), rng):
        slots[members] = slot_of
    return Plan(slots, load)
