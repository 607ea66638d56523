"""The tick: due schedules become runs; lost creates, due polls and late runs are found.

Each function takes a session and the time, changes rows, and returns what must be
published; the caller commits before it publishes, so a message never names a row that a
rollback took back, and a lost message is found again by the next tick.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from common.db import delete_batch
from common.models import Run, Schedule
from common.runs import (
    FINAL,
    IN_FLIGHT,
    NewRun,
    Reason,
    RunState,
    end_matching,
    in_states,
    make_runs,
    past_deadline,
    time_out,
)
from common.slots import DAY_S, last_run_at, next_run_at, period_of

# A run that has not started within a day of being due has missed its period.
START_WITHIN = dt.timedelta(seconds=DAY_S)


#: Due schedules one transaction of the tick turns into runs.
MATERIALIZE_BATCH = 5000


def materialize_due_runs(
    session: orm.Session, now: dt.datetime, limit: int = MATERIALIZE_BATCH
) -> int:
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
        .where(
            Schedule.next_run_at <= now,
            Schedule.server_gone_at.is_(None),
            # A paused schedule is never due; resume plans its next run from its slot again.
            Schedule.paused_at.is_(None),
        )
        .order_by(Schedule.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    runs, ids, nexts = [], [], []
    for schedule_id, tenant_id, server_id, day, slot in due:
        when = last_run_at(day, slot, now)
        runs.append(
            NewRun(
                schedule_id=schedule_id,
                tenant_id=tenant_id,
                server_id=server_id,
                trigger="schedule",
                period=period_of(day, slot, when),
                weekly=day is not None,
                scheduled_for=when,
                not_before=when,
                start_by=now + START_WITHIN,
            )
        )
        ids.append(schedule_id)
        nexts.append(next_run_at(day, slot, now))
    make_runs(session, runs, now)
    # One statement for every schedule moved on, as for the runs.
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
    # A run that waited on a busy server stays labelled busy: that is why it never started.
    reason = sa.case(
        (Run.reason == Reason.SERVER_BUSY.value, Reason.SERVER_BUSY.value),
        else_=Reason.MISSED_WINDOW.value,
    )
    error = sa.func.coalesce(Run.error, "not admitted") + "; skipped: its period has passed"
    return len(end_matching(session, RunState.SKIPPED, now, reason, error, Run.start_by < now))


def cancel_orphaned_runs(session: orm.Session, now: dt.datetime) -> int:
    """Pending runs whose schedule was disabled are cancelled."""
    cancelled = end_matching(
        session,
        RunState.CANCELLED,
        now,
        Reason.SCHEDULE_DISABLED,
        "the schedule was disabled",
        Run.schedule_id.is_(None),
        only_from=(RunState.PENDING,),
    )
    return len(cancelled)


def lost_creates(
    session: orm.Session, now: dt.datetime, lease_s: float, limit: int = 5000
) -> list[int]:
    """Runs admitted or creating whose lease ran out: no message is known to carry them.

    This recovers a message lost with the broker or a worker killed mid-task; the lease is
    renewed, so the next tick does not publish them again at once.
    """
    ids = list(
        session.scalars(
            sa.select(Run.id)
            .where(Run.state.in_((RunState.ADMITTED, RunState.CREATING)), Run.lease_until <= now)
            .order_by(Run.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_(ids))
            .values(lease_until=now + dt.timedelta(seconds=lease_s))
        )
    return ids


def due_polls(
    session: orm.Session,
    now: dt.datetime,
    poll_interval_s: float,
    limit: int = 5000,
    lease_s: float = 0.0,
) -> list[tuple[str, int]]:
    """Images in progress due for a poll: (tenant, run id) of runs SAVING past `next_poll_at`.

    Their next poll is set on by the lease (or the poll interval, if longer), so that a poll
    lost with its message comes again then; the poll itself sets the next one a poll interval
    after it looked. A lease shorter than the time a poll waits in its queue would publish
    the same run again at every tick.
    """
    rows = session.execute(
        sa.select(Run.tenant_id, Run.id)
        .where(Run.state == RunState.SAVING, Run.next_poll_at <= now)
        .order_by(Run.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_([run_id for _, run_id in rows]))
            .values({Run.next_poll_at: now + dt.timedelta(seconds=max(poll_interval_s, lease_s))})
        )
    return [(tenant_id, run_id) for tenant_id, run_id in rows]


def time_out_runs(session: orm.Session, now: dt.datetime) -> list[tuple[str, str]]:
    """Runs in flight past their deadline end timed out and free their place.

    Rows locked by a task at work are left for that task, whose poll times them out.
    Returns (tenant, server) pairs whose retention should run.
    """
    late = (
        sa.select(Run.id)
        .where(in_states(IN_FLIGHT), past_deadline(now))
        .with_for_update(skip_locked=True)
    )
    return time_out(session, now, Run.id.in_(late.scalar_subquery()))


def trim_history(session: orm.Session, now: dt.datetime, keep_days: int, limit: int = 10000) -> int:
    """Finished runs older than the history setting are deleted, a bounded batch a call."""
    oldest = now - dt.timedelta(days=keep_days)
    return delete_batch(session, Run, in_states(FINAL), Run.finished_at < oldest, limit=limit)


def remove_gone_schedules(session: orm.Session, now: dt.datetime, grace_s: int) -> int:
    """Schedules of servers that vanished are removed after the grace period."""
    cutoff = now - dt.timedelta(seconds=grace_s)
    return session.execute(sa.delete(Schedule).where(Schedule.server_gone_at < cutoff)).rowcount
