"""Schedules in the database: enable or replace, read, list and remove, one row per server."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert

from common.models import Schedule
from common.slots import next_run_at


@dataclasses.dataclass(frozen=True)
class ScheduleView:
    server_id: str
    retention: int
    day_of_week: int | None
    next_run_at: dt.datetime


def view(row: Schedule) -> ScheduleView:
    return ScheduleView(row.server_id, row.retention, row.day_of_week, row.next_run_at)


# Built once: the API's hottest read then skips rebuilding the statement and its cache key.
_FIND = sa.select(Schedule).where(
    Schedule.server_id == sa.bindparam("server_id"), Schedule.tenant_id == sa.bindparam("tenant_id")
)


def find(session: orm.Session, tenant_id: str, server_id: str) -> Schedule | None:
    return session.scalar(_FIND, {"server_id": server_id, "tenant_id": tenant_id})


def upsert(
    session: orm.Session,
    *,
    tenant_id: str,
    server_id: str,
    server_name: str,
    retention: int,
    day_of_week: int | None,
    slot_s: int,
    default_duration_s: float,
    now: dt.datetime,
) -> Schedule:
    """Store the schedule; the unique server id makes a racing second POST an update."""
    values = {
        "tenant_id": tenant_id,
        "server_id": server_id,
        "server_name": server_name,
        "retention": retention,
        "day_of_week": day_of_week,
        "slot_s": slot_s,
        "next_run_at": next_run_at(day_of_week, slot_s, now),
        "expected_duration_s": default_duration_s,
        "created_at": now,
        "updated_at": now,
    }
    statement = insert(Schedule).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[Schedule.server_id],
        set_={
            key: statement.excluded[key]
            for key in (
                "server_name",
                "retention",
                "day_of_week",
                "slot_s",
                "next_run_at",
                "updated_at",
            )
        }
        | {"server_gone_at": None},
        # A server id is one tenant's for good; never let a row change hands.
        where=Schedule.tenant_id == tenant_id,
    ).returning(Schedule)
    row = session.scalars(statement, execution_options={"populate_existing": True}).one()
    return row


def remove(session: orm.Session, tenant_id: str, server_id: str) -> bool:
    deleted = session.execute(
        sa.delete(Schedule).where(Schedule.server_id == server_id, Schedule.tenant_id == tenant_id)
    )
    return deleted.rowcount > 0


def page(session: orm.Session, tenant_id: str, limit: int, marker: str | None) -> list[Schedule]:
    query = sa.select(Schedule).where(Schedule.tenant_id == tenant_id)
    if marker is not None:
        query = query.where(Schedule.server_id > marker)
    return list(session.scalars(query.order_by(Schedule.server_id).limit(limit)))
