"""Rebalance jobs: asking for one, running it one at a time, and finding the ones whose
message or worker was lost.

A rebalance of a large fleet under a tight cap takes tens of seconds, longer than an HTTP
request may live, so the operator API records a job and a worker on the plan queue runs it.
The row is the truth; a message only says "look at job X", and the tick publishes again a
job that no message is known to carry.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import orm

from common.db import delete_batch, is_outage, transaction
from common.logging import log_context
from common.models import (
    REBALANCE_ACTIVE,
    REBALANCE_DONE,
    REBALANCE_FAILED,
    REBALANCE_QUEUED,
    REBALANCE_RUNNING,
    Rebalance,
)
from common.runtime_settings import inflight_cap
from scheduler.fleet_plan import rebalance_fleet
from scheduler.planning import QuietObserver

log = logging.getLogger("scheduled_images.rebalance")

# Held for the whole of a re-plan, by a job or by `plan rebalance`: two re-plans at once would
# each move schedules on a picture the other is changing. A transaction-level lock, so a
# process that dies mid-rebalance frees it with its connection.
REBALANCE_LOCK = 0x5C4EBA1A
# Held while a request looks for the active job and adds one: short, never behind a re-plan.
REQUEST_LOCK = 0x5C4EBA1B
# The task's time limit: a million schedules take under a minute; the rest is headroom for a
# slow database. Past it the job fails instead of holding the lock for good.
TIME_LIMIT_S = 900
# A worker lost this many times on one job (killed, out of memory) fails it: a rebalance
# that kills its worker would otherwise run again forever.
MAX_ATTEMPTS = 3


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    # Another re-plan holds the lock: try again shortly; the job stays as it is.
    BUSY = "busy"
    # No such job, or it is already done or failed: a second message for it.
    SKIPPED = "skipped"


def parse_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def request_rebalance(
    session: orm.Session, now: dt.datetime, lease_s: float
) -> tuple[Rebalance, bool]:
    """The active job if there is one, else a new queued one; True when it is new.

    The new job's lease gives its message `lease_s` to be taken before the tick publishes
    the job again (see `take_lost_jobs`).
    """
    session.execute(sa.select(sa.func.pg_advisory_xact_lock(REQUEST_LOCK)))
    active = session.scalar(
        sa.select(Rebalance).where(Rebalance.state.in_(REBALANCE_ACTIVE)).limit(1)
    )
    if active is not None:
        return active, False
    job = Rebalance(
        id=uuid.uuid4(),
        state=REBALANCE_QUEUED,
        requested_at=now,
        attempts=0,
        lease_until=now + dt.timedelta(seconds=lease_s),
    )
    session.add(job)
    session.flush()
    return job, True


def forget_publish(session: orm.Session, job_id: uuid.UUID) -> None:
    """The job's message could not be sent: the next tick publishes it, not a lease later."""
    session.execute(
        sa.update(Rebalance)
        .where(Rebalance.id == job_id, Rebalance.state == REBALANCE_QUEUED)
        .values(lease_until=None)
    )


def take_lost_jobs(session: orm.Session, now: dt.datetime, lease_s: float) -> list[str]:
    """Active jobs that no message or worker is known to carry; the caller publishes them.

    A queued job whose lease ran out lost its message (the broker was down or restarted). A
    running job whose worker holds no rebalance lock lost its worker: a live one holds the
    lock from before it marks the job running until the commit that marks it done. Such a
    job is queued again and runs again; a rebalance is idempotent.
    """
    rows = session.execute(
        sa.select(Rebalance.id, Rebalance.state, Rebalance.lease_until)
        .where(Rebalance.state.in_(REBALANCE_ACTIVE))
        .with_for_update(skip_locked=True)
    ).all()
    lost = []
    for job_id, state, lease_until in rows:
        expired = lease_until is None or lease_until <= now
        if expired or (state == REBALANCE_RUNNING and _lock_is_free(session)):
            lost.append(job_id)
    if lost:
        session.execute(
            sa.update(Rebalance)
            .where(Rebalance.id.in_(lost))
            .values(state=REBALANCE_QUEUED, lease_until=now + dt.timedelta(seconds=lease_s))
        )
    return [str(job_id) for job_id in lost]


def trim_finished(session: orm.Session, now: dt.datetime, keep_days: int, limit: int = 1000) -> int:
    """Jobs finished more than `keep_days` ago are deleted, a bounded batch a call; queued and
    running ones are kept however old."""
    oldest = now - dt.timedelta(days=keep_days)
    finished = Rebalance.state.in_((REBALANCE_DONE, REBALANCE_FAILED))
    return delete_batch(session, Rebalance, finished, Rebalance.finished_at < oldest, limit=limit)


def _lock_is_free(session: orm.Session) -> bool:
    # Taken at once when free and held to the end of the caller's short transaction.
    return bool(session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(REBALANCE_LOCK))))


def lock_rebalancing(session: orm.Session, wait: bool) -> bool:
    """Take the rebalance lock for the session's transaction; False if busy and not `wait`."""
    if wait:
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(REBALANCE_LOCK)))
        return True
    return _lock_is_free(session)


def run_job(
    sessions: orm.sessionmaker[orm.Session],
    job_id: str,
    default_cap: int,
    clock: Callable[[], dt.datetime],
) -> Outcome:
    """Re-plan the fleet for job `job_id`, at most one re-plan at a time.

    The moved schedules and the job's `done` commit together, so a worker lost mid-way
    leaves the schedules as they were and the job running, for the tick to queue again. A
    database outage propagates (the task retries); any other error fails the job.
    """
    parsed = parse_id(job_id)
    if parsed is None:
        log.warning("rebalance job id is not a UUID", extra={"rebalance_id": job_id})
        return Outcome.SKIPPED
    with log_context(rebalance_id=job_id):
        try:
            return _run_locked(sessions, parsed, default_cap, clock)
        except Exception as error:
            if is_outage(error):
                raise
            log.exception("rebalance failed")
            with transaction(sessions) as session:
                _end(session, parsed, clock(), error=f"{error.__class__.__name__}: {error}")
            return Outcome.FAILED


def _run_locked(
    sessions: orm.sessionmaker[orm.Session],
    job_id: uuid.UUID,
    default_cap: int,
    clock: Callable[[], dt.datetime],
) -> Outcome:
    with transaction(sessions) as session:
        if not lock_rebalancing(session, wait=False):
            log.info("another rebalance is running; this one waits")
            return Outcome.BUSY
        job = session.get(Rebalance, job_id)
        if job is None or job.state not in REBALANCE_ACTIVE:
            log.info("rebalance job already ended or unknown; nothing to do")
            return Outcome.SKIPPED
        if job.attempts >= MAX_ATTEMPTS:
            message = (
                f"gave up after {job.attempts} attempts: each time its worker was lost or "
                "the database went away mid-rebalance"
            )
            _end(session, job_id, clock(), error=message)
            log.error("rebalance failed", extra={"error": message})
            return Outcome.FAILED
        # Marked running on a connection of its own, committed at once, so that the API shows
        # it while this transaction, which must stay open to hold the lock, re-plans.
        started = clock()
        with transaction(sessions) as marker:
            marker.execute(
                sa.update(Rebalance)
                .where(Rebalance.id == job_id)
                .values(
                    state=REBALANCE_RUNNING,
                    started_at=started,
                    attempts=Rebalance.attempts + 1,
                    lease_until=started + dt.timedelta(seconds=TIME_LIMIT_S + 60),
                    stage=None,
                )
            )
        log.info("rebalance started", extra={"attempt": job.attempts + 1})
        # While the fleet is re-planned the connection sits idle in this transaction; a
        # worker host that vanishes without closing it must not hold the lock for hours.
        session.execute(
            sa.text(f"SET LOCAL idle_in_transaction_session_timeout = '{TIME_LIMIT_S}s'")
        )
        cap = inflight_cap(session, default_cap)
        summary = rebalance_fleet(session, cap, clock(), observer=_JobStages(sessions, job_id))
        _end(session, job_id, clock(), summary=summary.as_dict())
    log.info("rebalance done", extra=summary.as_dict())
    return Outcome.DONE


class _JobStages(QuietObserver):
    """Each stage of the planner, as it starts, logged and set on the job, which the operator
    API shows (near the bound most of a rebalance goes after the placing). Committed on a
    connection of its own, as the job was marked running."""

    def __init__(self, sessions: orm.sessionmaker[orm.Session], job_id: uuid.UUID) -> None:
        self._sessions = sessions
        self._job_id = job_id

    def stage(self, what: str) -> None:
        log.info("rebalance stage", extra={"stage": what})
        with transaction(self._sessions) as session:
            session.execute(
                sa.update(Rebalance)
                .where(Rebalance.id == self._job_id, Rebalance.state == REBALANCE_RUNNING)
                .values(stage=what)
            )


def _end(
    session: orm.Session,
    job_id: uuid.UUID,
    now: dt.datetime,
    summary: dict | None = None,
    error: str | None = None,
) -> None:
    session.execute(
        sa.update(Rebalance)
        .where(Rebalance.id == job_id, Rebalance.state.in_(REBALANCE_ACTIVE))
        .values(
            state=REBALANCE_FAILED if error else REBALANCE_DONE,
            finished_at=now,
            lease_until=None,
            summary=summary,
            error=error,
        )
    )
