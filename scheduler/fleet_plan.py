"""The planner against the database: the fleet's planned load, placing one schedule when it
is enabled, and re-planning every schedule (a rebalance)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import numpy as np
import sqlalchemy as sa
from sqlalchemy import orm

from common.models import Schedule
from common.slots import next_run_at
from scheduler.planning import DAILY, QUIET, LoadProfile, Observer, lower_bound, rebalance

# How stale a process's picture of the planned load may get before it is read again. Other
# processes place schedules too; a placement on a slightly stale picture only makes the next
# rebalance move a little more.
PROFILE_MAX_AGE_S = 60.0


@dataclasses.dataclass(frozen=True)
class Fleet:
    ids: np.ndarray
    day_of_week: np.ndarray  # DAILY (-1) for daily schedules
    slot_s: np.ndarray
    duration_s: np.ndarray
    tenant_id: np.ndarray


def load_fleet(session: orm.Session) -> Fleet:
    rows = session.execute(
        sa.select(
            Schedule.id,
            Schedule.day_of_week,
            Schedule.slot_s,
            Schedule.expected_duration_s,
            Schedule.tenant_id,
        )
        .where(Schedule.server_gone_at.is_(None))
        .order_by(Schedule.id)
    ).all()
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Fleet(
            empty, empty.astype(np.int8), empty, empty.astype(float), np.zeros(0, dtype=object)
        )
    ids, days, slots, durations, tenants = zip(*rows, strict=True)
    return Fleet(
        np.array(ids, dtype=np.int64),
        np.array([DAILY if d is None else d for d in days], dtype=np.int8),
        np.array(slots, dtype=np.int64),
        np.array(durations, dtype=np.float64),
        np.array(tenants, dtype=object),
    )


class PlannedLoad:
    """A process's picture of the planned load, read from the database at most once a minute,
    so that placing one schedule costs a placement, not a read of the whole fleet."""

    def __init__(self, max_age_s: float = PROFILE_MAX_AGE_S) -> None:
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._profile: LoadProfile | None = None
        self._read_at = 0.0

    def profile(self, session: orm.Session) -> LoadProfile:
        if self._profile is None or time.monotonic() - self._read_at > self._max_age_s:
            fleet = load_fleet(session)
            self._profile = LoadProfile.from_schedules(
                fleet.day_of_week, fleet.slot_s, fleet.duration_s, fleet.tenant_id
            )
            self._read_at = time.monotonic()
        return self._profile

    def place(
        self,
        session: orm.Session,
        current: Schedule | sa.Row | None,
        day_of_week: int | None,
        tenant_id: str,
        duration_s: float,
        cap: float,
    ) -> int:
        """The best place the planned load offers now for a new schedule, or for `current`
        moving to another day or kind (its own load is taken out first)."""
        with self._lock:
            profile = self.profile(session)
            if current is not None:
                profile.remove(
                    current.day_of_week,
                    current.slot_s,
                    current.expected_duration_s,
                    current.tenant_id,
                )
                # A schedule placed by another process since this picture was read was never
                # in it: removing it must not leave a negative load that draws placements.
                np.maximum(profile.load, 0.0, out=profile.load)
            return profile.place(day_of_week, duration_s, tenant_id, cap)


@dataclasses.dataclass(frozen=True)
class RebalanceSummary:
    schedules: int
    moved: int
    peak: float
    lower_bound: float
    lower_bound_explanation: str
    on_day_share: float
    cap: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def rebalance_fleet(
    session: orm.Session,
    cap: float,
    now: dt.datetime,
    observer: Observer = QUIET,
) -> RebalanceSummary:
    """Re-plan every schedule under `cap`; moved schedules get their new slot and next run.
    The `observer` hears what the planner does as each of its stages starts.

    The caller's transaction holds the moved rows; one statement writes them all.
    """
    fleet = load_fleet(session)
    if fleet.ids.size == 0:
        return RebalanceSummary(0, 0, 0.0, 0.0, "no schedules", 1.0, cap)
    # With the LPs that judge the plan: a plan short of their share on their day is made again
    # from them, and the bound the target falls back to is the hourly one, as `simulate` plans.
    plan = rebalance(
        fleet.day_of_week, fleet.duration_s, fleet.tenant_id, fleet.slot_s, cap, observer=observer
    )
    moved = np.flatnonzero(plan.slot_s != fleet.slot_s)
    if moved.size:
        nexts = [
            next_run_at(
                None if fleet.day_of_week[i] == DAILY else int(fleet.day_of_week[i]),
                int(plan.slot_s[i]),
                now,
            )
            for i in moved
        ]
        session.execute(
            sa.text(
                """
                UPDATE schedules SET slot_s = moved.slot_s, next_run_at = moved.next_run_at
                FROM unnest(CAST(:ids AS bigint[]), CAST(:slots AS integer[]),
                            CAST(:nexts AS timestamptz[])) AS moved(id, slot_s, next_run_at)
                WHERE schedules.id = moved.id
                """
            ),
            {
                "ids": fleet.ids[moved].tolist(),
                "slots": plan.slot_s[moved].tolist(),
                "nexts": nexts,
            },
        )
    return RebalanceSummary(
        schedules=int(fleet.ids.size),
        moved=int(moved.size),
        peak=plan.peak,
        lower_bound=plan.lower_bound,
        lower_bound_explanation=plan.lower_bound_explanation,
        on_day_share=plan.on_day_share,
        cap=cap,
    )


def planned_week(session: orm.Session, now: dt.datetime) -> dict:
    """The planned load per hour for the coming week, starting with the current hour."""
    fleet = load_fleet(session)
    profile = LoadProfile.from_schedules(fleet.day_of_week, fleet.slot_s, fleet.duration_s)
    hourly = np.array(profile.hourly_peak())
    hour_of_week = now.weekday() * 24 + now.hour
    start = now.replace(minute=0, second=0, microsecond=0)
    bound = lower_bound(fleet.day_of_week, fleet.duration_s)
    return {
        "hours": [
            {
                "hour": (start + dt.timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "planned_in_flight": float(hourly[(hour_of_week + k) % 168]),
            }
            for k in range(168)
        ],
        "planned_peak": profile.peak(),
        "lower_bound": bound.value,
        "lower_bound_explanation": bound.explanation,
        "schedules": int(fleet.ids.size),
    }
