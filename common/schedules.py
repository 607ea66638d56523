"""Schedules in the database: enable or replace, read, list, pause, resume and remove, one row
per server; and when a schedule is stale."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert

from common import outbox
from common.clock import iso_z_or_none
from common.days import DAY_NAMES
from common.db import read_row, write_row
from common.models import Schedule
from common.runs import cancel_waiting_scheduled_runs
from common.slots import DAY_S, WEEK_S, next_run_at, period_length

#: How long past one period a schedule may go without a success before it is stale.
STALE_GRACE = dt.timedelta(hours=12)


@dataclasses.dataclass(frozen=True)
class ScheduleView:
    server_id: str
    retention: int
    day_of_week: int | None
    #: None while paused: no run is planned.
    next_run_at: dt.datetime | None
    paused: bool
    last_success_at: dt.datetime | None
    stale: bool


def is_stale(
    day_of_week: int | None,
    created_at: dt.datetime,
    last_success_at: dt.datetime | None,
    paused: bool,
    now: dt.datetime,
) -> bool:
    """API.md's rule: older than one period, and no success within one period plus the grace.

    A paused schedule is never stale: nobody expects an image of it. `stale_clause` is the
    same rule in SQL.
    """
    period = dt.timedelta(seconds=period_length(day_of_week))
    if paused or created_at >= now - period:
        return False
    return last_success_at is None or last_success_at < now - period - STALE_GRACE


def stale_clause(now: dt.datetime) -> sa.ColumnElement[bool]:
    """`is_stale` as a WHERE clause, for the stale list and the stale gauge."""
    daily = dt.timedelta(seconds=DAY_S)
    weekly = dt.timedelta(seconds=WEEK_S)

    def older_than(period: dt.timedelta) -> sa.ColumnElement[bool]:
        cutoff = now - period - STALE_GRACE
        return sa.and_(
            Schedule.created_at < now - period,
            sa.or_(Schedule.last_success_at.is_(None), Schedule.last_success_at < cutoff),
        )

    return sa.and_(
        Schedule.paused_at.is_(None),
        # The shorter period's cutoff bounds both, so the last_success_at index can narrow
        # the scan before the per-kind test.
        sa.or_(
            Schedule.last_success_at.is_(None),
            Schedule.last_success_at < now - daily - STALE_GRACE,
        ),
        sa.or_(
            sa.and_(Schedule.day_of_week.is_(None), older_than(daily)),
            sa.and_(Schedule.day_of_week.is_not(None), older_than(weekly)),
        ),
    )


def view(row: Schedule | sa.Row, now: dt.datetime) -> ScheduleView:
    """What the API shows of a stored schedule (a row of `Schedule` or of its view columns)."""
    paused = row.paused_at is not None
    return ScheduleView(
        server_id=row.server_id,
        retention=row.retention,
        day_of_week=row.day_of_week,
        next_run_at=None if paused else row.next_run_at,
        paused=paused,
        last_success_at=row.last_success_at,
        stale=is_stale(row.day_of_week, row.created_at, row.last_success_at, paused, now),
    )


# Built once: the API's hottest read then skips rebuilding the statement and its cache key.
_FIND = sa.select(Schedule).where(
    Schedule.server_id == sa.bindparam("server_id"), Schedule.tenant_id == sa.bindparam("tenant_id")
)


def find(session: orm.Session, tenant_id: str, server_id: str) -> Schedule | None:
    return session.scalar(_FIND, {"server_id": server_id, "tenant_id": tenant_id})


# What `view` reads and nothing more, as plain columns: no ORM object to build.
_FIND_VIEW = sa.select(
    Schedule.server_id,
    Schedule.retention,
    Schedule.day_of_week,
    Schedule.next_run_at,
    Schedule.paused_at,
    Schedule.last_success_at,
    Schedule.created_at,
).where(
    Schedule.server_id == sa.bindparam("server_id"), Schedule.tenant_id == sa.bindparam("tenant_id")
)


# What placing a schedule anew reads of the one it replaces (`scheduler.placement`).
_FIND_PLACED = sa.select(
    Schedule.tenant_id, Schedule.day_of_week, Schedule.slot_s, Schedule.expected_duration_s
).where(
    Schedule.server_id == sa.bindparam("server_id"), Schedule.tenant_id == sa.bindparam("tenant_id")
)


def read_placed(
    reads: orm.sessionmaker[orm.Session], tenant_id: str, server_id: str
) -> sa.Row | None:
    """Where the server's schedule is placed (its day, slot and duration), read as `read_view`
    reads; None when it has none."""
    return read_row(reads, _FIND_PLACED, {"server_id": server_id, "tenant_id": tenant_id})


def read_view(
    reads: orm.sessionmaker[orm.Session], tenant_id: str, server_id: str, now: dt.datetime
) -> ScheduleView | None:
    """The schedule as the API shows it, read through `common.db.read_row` from the read
    sessions' engine; None when the server has none."""
    row = read_row(reads, _FIND_VIEW, {"server_id": server_id, "tenant_id": tenant_id})
    return None if row is None else view(row, now)


#: The columns an enabled schedule is stored with, each bound under its own name.
_STORED = (
    "tenant_id",
    "server_id",
    "server_name",
    "retention",
    "day_of_week",
    "slot_s",
    "next_run_at",
    "expected_duration_s",
    "created_at",
    "updated_at",
)
#: The columns a POST on an existing schedule replaces.
_REPLACED = ("server_name", "retention", "day_of_week", "slot_s", "next_run_at", "updated_at")


def _upsert_statement(*returned: sa.ColumnElement | type[Schedule]) -> sa.Executable:
    statement = insert(Schedule).values({name: sa.bindparam(name) for name in _STORED})
    return statement.on_conflict_do_update(
        index_elements=[Schedule.server_id],
        set_={key: statement.excluded[key] for key in _REPLACED}
        | {"server_gone_at": None, "paused_at": None},
        # A server id is one tenant's for good; never let a row change hands.
        where=Schedule.tenant_id == sa.bindparam("tenant_id"),
    ).returning(*returned)


# Built once, as _FIND is: each POST binds its values to the one compiled statement.
_UPSERT = _upsert_statement(Schedule)
# The same, answering what `view` reads, as _FIND_VIEW does.
_STORE = _upsert_statement(*_FIND_VIEW.selected_columns)


class Enabled(TypedDict):
    """What enabling or replacing a schedule stores, and when."""

    tenant_id: str
    server_id: str
    server_name: str
    retention: int
    day_of_week: int | None
    slot_s: int
    default_duration_s: float
    now: dt.datetime


def upsert(session: orm.Session, **schedule: Unpack[Enabled]) -> Schedule:
    """Store the schedule; the unique server id makes a racing second POST an update.

    Storing a paused schedule resumes it: a compatible client that enables it means enabled.
    """
    values = _stored_values(schedule)
    return session.scalars(_UPSERT, values, execution_options={"populate_existing": True}).one()


def store(
    writes: orm.sessionmaker[orm.Session], **schedule: Unpack[Enabled]
) -> ScheduleView | None:
    """`upsert` as one statement committed alone (`common.db.write_row`, on the read sessions'
    autocommit engine): the schedule as the API shows it, or None when the server id is
    another tenant's."""
    row = write_row(writes, _STORE, _stored_values(schedule))
    return None if row is None else view(row, schedule["now"])


def _stored_values(schedule: Enabled) -> dict[str, object]:
    now = schedule["now"]
    return {
        "tenant_id": schedule["tenant_id"],
        "server_id": schedule["server_id"],
        "server_name": schedule["server_name"],
        "retention": schedule["retention"],
        "day_of_week": schedule["day_of_week"],
        "slot_s": schedule["slot_s"],
        "next_run_at": next_run_at(schedule["day_of_week"], schedule["slot_s"], now),
        "expected_duration_s": schedule["default_duration_s"],
        "created_at": now,
        "updated_at": now,
    }


def remove(session: orm.Session, tenant_id: str, server_id: str) -> bool:
    deleted = session.execute(
        sa.delete(Schedule).where(Schedule.server_id == server_id, Schedule.tenant_id == tenant_id)
    )
    return deleted.rowcount > 0


def pause(
    session: orm.Session, tenant_id: str, server_id: str, now: dt.datetime
) -> Schedule | None:
    """Pause the schedule (a second pause keeps the first time); None when there is none.

    Its scheduled runs still waiting are cancelled with it.
    """
    row = session.scalar(_FIND.with_for_update(), {"server_id": server_id, "tenant_id": tenant_id})
    if row is not None and row.paused_at is None:
        row.paused_at = now
        cancel_waiting_scheduled_runs(session, row.id, now)
    return row


def resume(
    session: orm.Session, tenant_id: str, server_id: str, now: dt.datetime
) -> Schedule | None:
    """Resume the schedule from its slot's next occurrence: the periods it missed while paused
    are not made up. None when there is none; resuming one that runs changes nothing."""
    row = session.scalar(_FIND.with_for_update(), {"server_id": server_id, "tenant_id": tenant_id})
    if row is not None and row.paused_at is not None:
        row.paused_at = None
        row.next_run_at = next_run_at(row.day_of_week, row.slot_s, now)
    return row


def page(
    session: orm.Session,
    tenant_id: str,
    limit: int,
    marker: str | None,
    stale: bool | None = None,
    now: dt.datetime | None = None,
) -> list[Schedule]:
    """The tenant's schedules by server id; with `stale`, only those that are (or are not)
    stale at `now`."""
    query = sa.select(Schedule).where(Schedule.tenant_id == tenant_id)
    if marker is not None:
        query = query.where(Schedule.server_id > marker)
    if stale is not None:
        if now is None:
            raise ValueError("filtering on staleness needs the time")
        clause = stale_clause(now)
        query = query.where(clause if stale else sa.not_(clause))
    return list(session.scalars(query.order_by(Schedule.server_id).limit(limit)))


def count_stale(session: orm.Session, now: dt.datetime) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Schedule).where(stale_clause(now)))


def announce_stale(session: orm.Session, now: dt.datetime) -> int:
    """Mark the schedules that went stale since they were last told, and write a
    `schedule.stale` event for each whose tenant has a webhook, in the caller's transaction.
    Returns how many went stale."""
    went_stale = session.execute(
        sa.update(Schedule)
        .where(stale_clause(now), Schedule.stale_announced_at.is_(None))
        .values(stale_announced_at=now)
        .returning(
            Schedule.tenant_id, Schedule.server_id, Schedule.day_of_week, Schedule.last_success_at
        ),
        execution_options={"synchronize_session": False},
    ).all()
    hooked = outbox.hooked_tenants(session, {row.tenant_id for row in went_stale})
    events = [_stale_event(row, now) for row in went_stale if row.tenant_id in hooked]
    outbox.add_events(session, events, now)
    return len(went_stale)


def _stale_event(row: sa.Row, now: dt.datetime) -> outbox.NewEvent:
    return outbox.NewEvent(
        tenant_id=row.tenant_id,
        type=outbox.SCHEDULE_STALE,
        source=f"/v2/{row.tenant_id}/servers/{row.server_id}/rax-si-image-schedule",
        subject="schedule",
        time=now,
        data={
            "tenant_id": row.tenant_id,
            "server_id": row.server_id,
            "day_of_week": DAY_NAMES[row.day_of_week] if row.day_of_week is not None else None,
            "last_success_at": iso_z_or_none(row.last_success_at),
        },
    )
