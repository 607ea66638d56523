"""Placing one schedule at once when it is enabled or changed, from the planned load."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from common.db import read
from common.models import Schedule
from common.runtime_settings import read_inflight_cap
from scheduler.fleet_plan import PlannedLoad


def choose_slot(
    planned: PlannedLoad,
    reads: orm.sessionmaker[orm.Session],
    current: Schedule | sa.Row | None,
    day_of_week: int | None,
    tenant_id: str,
    default_cap: int,
    default_duration_s: float,
) -> int:
    """Keep a schedule's slot when its kind and day stay; otherwise the planner's best slot
    under the in-flight cap (`default_cap` until an operator sets one), given every schedule
    already planned. `current` is the stored schedule, or a row of its tenant, day, slot and
    expected duration; what is read is read through `reads` (`common.db.read`): no lock."""
    if current is not None and current.day_of_week == day_of_week:
        # Nothing moves: no need to read the cap, or to read or lock the planned load.
        return current.slot_s
    duration = current.expected_duration_s if current is not None else default_duration_s
    cap = read_inflight_cap(reads, default_cap)
    return read(
        reads,
        lambda session: planned.place(session, current, day_of_week, tenant_id, duration, cap),
    )
