"""Placing one schedule at once when it is enabled or changed, from the planned load."""

from __future__ import annotations

from sqlalchemy import orm

from common.models import Schedule
from common.runtime_settings import inflight_cap
from scheduler.fleet_plan import PlannedLoad


def choose_slot(
    planned: PlannedLoad,
    session: orm.Session,
    current: Schedule | None,
    day_of_week: int | None,
    tenant_id: str,
    default_cap: int,
    default_duration_s: float,
) -> int:
    """Keep a schedule's slot when its kind and day stay; otherwise the planner's best slot
    under the in-flight cap (`default_cap` until an operator sets one), given every schedule
    already planned."""
    if current is not None and current.day_of_week == day_of_week:
        # Nothing moves: no need to read the cap, or to read or lock the planned load.
        return current.slot_s
    duration = current.expected_duration_s if current is not None else default_duration_s
    cap = inflight_cap(session, default_cap)
    return planned.place(session, current, day_of_week, tenant_id, duration, cap)
