"""Runs in the database: run a schedule now, and read a server's history."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from common.models import PENDING, Run, Schedule

# A run asked for by hand waits its turn, but not for ever.
MANUAL_START_WITHIN = dt.timedelta(days=1)


class NoSchedule(LookupError):
    pass


def request_run(session: orm.Session, tenant_id: str, server_id: str, now: dt.datetime) -> Run:
    """A run of the server's schedule now, once; it waits its turn under the cap."""
    schedule = session.scalar(
        sa.select(Schedule).where(Schedule.server_id == server_id, Schedule.tenant_id == tenant_id)
    )
    if schedule is None:
        raise NoSchedule(server_id)
    run = Run(
        schedule_id=schedule.id,
        tenant_id=tenant_id,
        server_id=server_id,
        trigger="manual",
        period=now.date(),
        weekly=schedule.day_of_week is not None,
        scheduled_for=now,
        state=PENDING,
        attempts=0,
        created_at=now,
        not_before=now,
        start_by=now + MANUAL_START_WITHIN,
    )
    session.add(run)
    session.flush()
    return run


def server_runs(
    session: orm.Session, tenant_id: str, server_id: str, limit: int, marker: int | None
) -> list[Run]:
    """The server's runs, newest first, `limit` at a time after the run `marker`."""
    query = sa.select(Run).where(Run.tenant_id == tenant_id, Run.server_id == server_id)
    if marker is not None:
        query = query.where(Run.id < marker)
    return list(session.scalars(query.order_by(Run.id.desc()).limit(limit)))
