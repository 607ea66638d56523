"""Placing one schedule at once when it is enabled or changed, from the planned load."""

from __future__ import annotations

from sqlalchemy import orm

from common.models import Schedule
from scheduler.fleet_plan import PlannedLoad


def choose_slot(
    planned: PlannedLoad,
    session: orm.Session,
    current: Schedule | None,
    day_of_week: int | None,
    tenant_id: str,
    cap: float,
    default_duration_s: float,
) -> int:
    """Keep a schedule's slot when its kind and day stay; otherwise the planner's best slot
    under the cap, given every schedule already planned."""
    duration = current.expected_duration_s if current is not None else default_duration_s
    return planned.place(session, current, day_of_week, tenant_id, duration, cap)
