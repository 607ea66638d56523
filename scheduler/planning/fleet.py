"""The fleet as the planner sees it (one array per property, one entry per schedule) and a plan
of it (a slot per schedule and the load they make)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from common.slots import DAY_S, SPILL_S, WEEK_S
from scheduler.planning.week import (
    BIN_S,
    DAILY,
    WEEK_BINS,
    as_day_array,
    daily_starts,
    duration_bins,
)


@dataclass(frozen=True)
class Fleet:
    """Per schedule: its day (DAILY for a daily one), expected duration, that duration in whole
    minutes, and its tenant as a small whole number."""

    days: np.ndarray  # int8
    durations: np.ndarray  # seconds, float64
    lengths: np.ndarray  # minutes, int64, at least one
    tenants: np.ndarray  # int64 codes, 0 for the first tenant in sorted order

    @property
    def size(self) -> int:
        return int(self.days.size)

    @property
    def weekly_count(self) -> int:
        return int((self.days != DAILY).sum())


@dataclass(frozen=True)
class Plan:
    """A slot per schedule (seconds after 00:00 for a daily one, after Monday 00:00 for a weekly
    one; -1 while unplaced) and the number in flight per minute of the week they make. The
    phases that refine a plan change both arrays in place, together."""

    slots: np.ndarray
    load: np.ndarray

    @property
    def peak(self) -> float:
        return float(self.load.max())

    def copy(self) -> Plan:
        return Plan(self.slots.copy(), self.load.copy())


def read_fleet(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    tenant_id: np.ndarray | Iterable[Hashable],
    current_slot: np.ndarray | Iterable[int],
) -> tuple[Fleet, np.ndarray]:
    """(the fleet, its current slots) from the caller's arrays, checked: ValueError names what
    is wrong."""
    days = as_day_array(day_of_week)
    durations = np.asarray(duration_s, dtype=np.float64)
    current = np.asarray(current_slot, dtype=np.int64)
    tenants = np.asarray(tenant_id)
    if not (days.size == durations.size == current.size == tenants.size):
        raise ValueError("all arrays must have one entry per schedule")
    if ((days < DAILY) | (days > 6)).any():
        raise ValueError("day_of_week must be None/-1 (daily) or 0..6")
    if (durations < 0).any() or not np.isfinite(durations).all():
        raise ValueError("expected durations must be finite and non-negative")
    _, codes = np.unique(tenants, return_inverse=True)
    fleet = Fleet(days, durations, duration_bins(durations), codes.astype(np.int64).ravel())
    return fleet, current


def allowed_slots(days: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Which schedules have a slot their kind allows: a time of day for a daily schedule, a
    start inside the window (the day, or 12 hours either side) for a weekly one."""
    daily = days == DAILY
    offset = (current - days.astype(np.int64) * DAY_S) % WEEK_S
    in_window = (offset < DAY_S + SPILL_S) | (offset >= WEEK_S - SPILL_S)
    return np.where(
        daily, (current >= 0) & (current < DAY_S), (current >= 0) & (current < WEEK_S) & in_window
    )


def tenant_stacking(fleet: Fleet, slots: np.ndarray) -> int:
    """The most runs of one tenant that start on the same minute of the week."""
    if fleet.size == 0:
        return 0
    minute = slots // BIN_S
    daily = fleet.days == DAILY
    week_minutes = np.concatenate((minute[~daily], daily_starts(minute[daily]))).astype(np.int64)
    codes = fleet.tenants
    owners = np.concatenate((codes[~daily], np.repeat(codes[daily], 7))).astype(np.int64)
    _, counts = np.unique(owners * WEEK_BINS + week_minutes, return_counts=True)
    return int(counts.max())
