"""The tick: due schedules become runs, and runs that lost their message or time are found.

Each function takes a session and the time, changes rows, and returns what must be
published; the caller commits before it publishes, so a message never names a row that a
rollback took back, and a lost message is found again by the next tick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from common.db import delete_batch
from common.models import (
    ADMITTED,
    CANCELLED,
    CREATING,
    FINAL,
    IN_FLIGHT,
    PENDING,
    SAVING,
    SKIPPED,
    TIMED_OUT,
    Run,
    Schedule,
)
from common.slots import DAY_S, last_run_at, next_run_at, period_of

# A run that has not started within a day of being due has missed its period.
START_WITHIN = dt.timedelta(seconds=DAY_S)


def materialize_due_runs(session: orm.Session, now: dt.datetime, limit: int = 5000) -> int:
    """Turn up to `limit` due schedules into pending runs and move their next run on.

    Periods missed while the service was down collapse into one run, for the latest
    occurrence; the unique (server, period) key makes a second tick's insert a no-op.
    """
    due = session.execute(
        sa.select(
            Schedule.id,
            Schedule.tenant_id,
            Schedule.server_id,
            Schedule.day_of_week,
            Schedule.slot_s,
        )
        .where(Schedule.next_run_at <= now, Schedule.server_gone_at.is_(None))
        .order_by(Schedule.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    # Arrays through unnest: one statement for the runs and one for the schedules, instead
    # of a statement a row, which is what keeps 10,000 due schedules under a second.
    ids, tenants, servers, periods, weekly, whens, nexts = [], [], [], [], [], [], []
    for schedule_id, tenant_id, server_id, day, slot in due:
        when = last_run_at(day, slot, now)
        ids.append(schedule_id)
        tenants.append(tenant_id)
        servers.append(server_id)
        periods.append(period_of(day, slot, when))
        weekly.append(day is not None)
        whens.append(when)
        nexts.append(next_run_at(day, slot, now))
    session.execute(
        sa.text(
            """
            INSERT INTO runs (schedule_id, tenant_id, server_id, trigger, period, weekly,
                              scheduled_for, state, attempts, created_at, not_before, start_by)
            SELECT id, tenant, server, 'schedule', period, weekly, due_at, :pending, 0, :now,
                   due_at, :start_by
            FROM unnest(CAST(:ids AS bigint[]), CAST(:tenants AS text[]),
                        CAST(:servers AS text[]), CAST(:periods AS date[]),
                        CAST(:weekly AS boolean[]), CAST(:whens AS timestamptz[]))
                 AS due(id, tenant, server, period, weekly, due_at)
            ON CONFLICT (server_id, period) WHERE trigger = 'schedule' DO NOTHING
            """
        ),
        {
            "ids": ids,
            "tenants": tenants,
            "servers": servers,
            "periods": periods,
            "weekly": weekly,
            "whens": whens,
            "pending": PENDING,
            "now": now,
            "start_by": now + START_WITHIN,
        },
    )
    session.execute(
        sa.text(
            """
            UPDATE schedules SET next_run_at = moved.next_run_at
            FROM unnest(CAST(:ids AS bigint[]), CAST(:nexts AS timestamptz[]))
                 AS moved(id, next_run_at)
            WHERE schedules.id = moved.id
            """
        ),
        {"ids": ids, "nexts": nexts},
    )
    return len(due)


def skip_missed_runs(session: orm.Session, now: dt.datetime) -> int:
    """Pending runs past their period are skipped, saying why they never started."""
    result = session.execute(
        sa.update(Run)
        .where(Run.state == PENDING, Run.start_by < now)
        .values(
            state=SKIPPED,
            finished_at=now,
            error=sa.func.coalesce(Run.error, "not admitted") + "; skipped: its period has passed",
        )
    )
    return result.rowcount


def cancel_orphaned_runs(session: orm.Session, now: dt.datetime) -> int:
    """Pending runs whose schedule was disabled are cancelled."""
    result = session.execute(
        sa.update(Run)
        .where(Run.state == PENDING, Run.schedule_id.is_(None))
        .values(state=CANCELLED, finished_at=now, error="the schedule was disabled")
    )
    return result.rowcount


@dataclasses.dataclass
class Republish:
    create: list[int] = dataclasses.field(default_factory=list)
    poll: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (tenant, run id)


def take_expired_leases(
    session: orm.Session,
    now: dt.datetime,
    lease_s: float,
    poll_interval_s: float,
    limit: int = 5000,
) -> Republish:
    """In-flight runs whose lease ran out: no message is known to carry them, publish again.

    For a run being created this recovers a message lost with the broker or a worker
    killed mid-task; for a run saving, the lease is its next poll.
    """
    rows = session.execute(
        sa.select(Run.id, Run.tenant_id, Run.state)
        .where(Run.state.in_(IN_FLIGHT), Run.lease_until <= now)
        .order_by(Run.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    found = Republish()
    create_until = now + dt.timedelta(seconds=lease_s)
    poll_until = now + dt.timedelta(seconds=poll_interval_s)
    for run_id, tenant_id, state in rows:
        if state == SAVING:
            found.poll.append((tenant_id, run_id))
        else:
            found.create.append(run_id)
    if found.create:
        session.execute(
            sa.update(Run).where(Run.id.in_(found.create)).values(lease_until=create_until)
        )
    if found.poll:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_([run_id for _, run_id in found.poll]))
            .values(lease_until=poll_until)
        )
    return found


def time_out_runs(session: orm.Session, now: dt.datetime) -> list[tuple[str, str]]:
    """In-flight runs past their deadline end timed out and free their place.

    Rows locked by a task at work are left for that task, which checks the deadline too.
    Returns (tenant, server) pairs whose retention should run.
    """
    rows = session.execute(
        sa.select(Run.id, Run.tenant_id, Run.server_id)
        .where(Run.state.in_((ADMITTED, CREATING, SAVING)), Run.deadline_at < now)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_([r.id for r in rows]))
            .values(
                state=TIMED_OUT,
                finished_at=now,
                lease_until=None,
                error=sa.func.coalesce(Run.error + "; ", "") + "timed out: the image did not "
                "finish before the run's deadline",
            )
        )
    return [(r.tenant_id, r.server_id) for r in rows]


def trim_history(session: orm.Session, now: dt.datetime, keep_days: int, limit: int = 10000) -> int:
    """Finished runs older than the history setting are deleted, a bounded batch a tick."""
    oldest = now - dt.timedelta(days=keep_days)
    return delete_batch(session, Run, Run.state.in_(FINAL), Run.finished_at < oldest, limit=limit)


def remove_gone_schedules(session: orm.Session, now: dt.datetime, grace_s: int) -> int:
    """Schedules of servers that vanished are removed after the grace period."""
    cutoff = now - dt.timedelta(seconds=grace_s)
    return session.execute(sa.delete(Schedule).where(Schedule.server_gone_at < cutoff)).rowcount
