"""The life of a run, in one place: how a run is made, which state may follow which, how it
ends, and its one time-out. The tick (scheduler) and the image steps (workers) both change
runs only through what this module builds, so each rule below is written once.

A run is made PENDING (by the tick for a schedule and period, or by hand: run now), admitted
under the cap, CREATING while a worker asks the cloud for the image, SAVING while polls
follow the image, and ends DONE, FAILED, TIMED_OUT, SKIPPED or CANCELLED; a failed attempt or
a busy server sends it back to PENDING. A run that ends without an image carries a `reason`
code beside its free-text `error`: metrics label by the code, people read the text.

Every end of a run is announced to its tenant's webhook by an event written in the
transaction that ends it (`end`, `end_matching`): no other path may put a run in a final state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence, Set
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from common import outbox
from common.clock import iso_z, iso_z_or_none
from common.models import Run, Schedule
from common.run_state import (
    FINAL,
    IN_FLIGHT,
    OPEN,
    RUN_STATES,
    TRANSITIONS,
    Reason,
    RunState,
    in_order,
    sources,
)

__all__ = [
    "FINAL",
    "IN_FLIGHT",
    "OPEN",
    "RUN_STATES",
    "TRANSITIONS",
    "Reason",
    "RunState",
    "in_order",
    "sources",
]

#: A run asked for by hand waits its turn, but not for ever.
MANUAL_START_WITHIN = dt.timedelta(days=1)
#: What a timed-out run's error says, whoever times it out.
TIMED_OUT_ERROR = "timed out: the image did not finish before the run's deadline"


class NoSchedule(LookupError):
    pass


class IllegalTransition(RuntimeError):
    """A change of state that TRANSITIONS does not allow: a bug, never a cloud's answer."""


# -- making runs ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NewRun:
    """A run to make: for a schedule and period (trigger `schedule`), or run now (`manual`)."""

    schedule_id: int | None
    tenant_id: str
    server_id: str
    trigger: str
    period: dt.date
    weekly: bool
    scheduled_for: dt.datetime
    not_before: dt.datetime
    start_by: dt.datetime


# Arrays through unnest: one statement for any number of runs, instead of a statement a row,
# which is what lets a tick make thousands of runs in a batch. The unique (server, period) key
# of scheduled runs makes a repeated insert (a second beat, a redelivered tick) a no-op.
_MAKE_RUNS = sa.text(
    """
    INSERT INTO runs (schedule_id, tenant_id, server_id, trigger, period, weekly,
                      scheduled_for, state, attempts, created_at, not_before, start_by)
    SELECT schedule_id, tenant_id, server_id, trigger, period, weekly, scheduled_for,
           :pending, 0, :now, not_before, start_by
    FROM unnest(CAST(:schedule_ids AS bigint[]), CAST(:tenant_ids AS text[]),
                CAST(:server_ids AS text[]), CAST(:triggers AS text[]),
                CAST(:periods AS date[]), CAST(:weekly AS boolean[]),
                CAST(:scheduled_for AS timestamptz[]), CAST(:not_before AS timestamptz[]),
                CAST(:start_by AS timestamptz[]))
         AS new(schedule_id, tenant_id, server_id, trigger, period, weekly, scheduled_for,
                not_before, start_by)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)


def make_runs(session: orm.Session, runs: Sequence[NewRun], now: dt.datetime) -> list[int]:
    """Insert the runs PENDING, one statement for all; returns the ids of those made.

    A run that would break one of the database's rules (one scheduled run per server and
    period, one open run-now per server) is not made, however many processes insert at once.
    """
    if not runs:
        return []
    columns = {
        "schedule_ids": [r.schedule_id for r in runs],
        "tenant_ids": [r.tenant_id for r in runs],
        "server_ids": [r.server_id for r in runs],
        "triggers": [r.trigger for r in runs],
        "periods": [r.period for r in runs],
        "weekly": [r.weekly for r in runs],
        "scheduled_for": [r.scheduled_for for r in runs],
        "not_before": [r.not_before for r in runs],
        "start_by": [r.start_by for r in runs],
    }
    made = session.execute(_MAKE_RUNS, {**columns, "pending": RunState.PENDING.value, "now": now})
    return list(made.scalars())


#: What a tenant reads of a run's error: a fixed sentence per reason. The full text, which can
#: name the cloud's internal endpoints, is for operators (/admin/v1).
TENANT_ERRORS: dict[Reason, str] = {
    Reason.CREATE_ERROR: "the cloud did not accept the image request",
    Reason.IMAGE_ERROR: "the image ended in ERROR",
    Reason.IMAGE_MISSING: "the image disappeared while it was being made",
    Reason.TIMED_OUT: "the image did not finish before the run's deadline",
    Reason.SERVER_GONE: "the server no longer exists",
    Reason.SCHEDULE_DISABLED: "the schedule was disabled",
    Reason.SCHEDULE_PAUSED: "the schedule was paused",
    Reason.SERVER_BUSY: "the server was busy with another image",
    Reason.MISSED_WINDOW: "no place was free before the run's period ended",
}
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def tenant_error(reason: str | None, error: str | None) -> str | None:
    """A run's error as its tenant sees it: `<reason>: <sentence>`, and for a create the
    cloud refused, the status it answered; never the cloud's own text."""
    if error is None:
        return None
    if reason not in Reason.__members__.values():
        return "error: the run did not complete"
    code = Reason(reason)
    sentence = TENANT_ERRORS[code]
    status = _HTTP_STATUS.search(error) if code is Reason.CREATE_ERROR else None
    if status is not None:
        sentence = f"the cloud answered {status.group(1)}"
    return f"{code.value}: {sentence}"


def public_fields(run: Any) -> dict[str, Any]:
    """A run as its tenant sees it (the API's answers, webhook events): a Run, or a row of
    the same columns."""
    return {
        "id": run.id,
        "trigger": run.trigger,
        "scheduled_for": iso_z(run.scheduled_for),
        "started_at": iso_z_or_none(run.started_at),
        "finished_at": iso_z_or_none(run.finished_at),
        "state": str(run.state),
        "image_id": run.image_id,
        "attempts": run.attempts,
        # The tenant's view: a reason and a sentence, never the cloud's own text, which can
        # name its internal endpoints. Operators read the full text through /admin/v1.
        "error": tenant_error(run.reason, run.error),
    }


def open_manual_run(session: orm.Session, tenant_id: str, server_id: str) -> Run | None:
    """The server's run-now that has not ended, if there is one (the database allows one)."""
    return session.scalar(
        sa.select(Run).where(
            Run.tenant_id == tenant_id,
            Run.server_id == server_id,
            Run.trigger == "manual",
            in_states(OPEN),
        )
    )


def request_run(session: orm.Session, tenant_id: str, server_id: str, now: dt.datetime) -> Run:
    """A run of the server's schedule now, once: while one has not ended, asking again
    answers that one. It waits its turn under the cap."""
    waiting = open_manual_run(session, tenant_id, server_id)
    if waiting is not None:
        return waiting
    schedule = session.scalar(
        sa.select(Schedule).where(Schedule.server_id == server_id, Schedule.tenant_id == tenant_id)
    )
    if schedule is None:
        raise NoSchedule(server_id)
    new = NewRun(
        schedule_id=schedule.id,
        tenant_id=tenant_id,
        server_id=server_id,
        trigger="manual",
        period=now.date(),
        weekly=schedule.day_of_week is not None,
        scheduled_for=now,
        not_before=now,
        start_by=now + MANUAL_START_WITHIN,
    )
    made = make_runs(session, [new], now)
    # Nothing made: a request in parallel made the run first, and committed it before this
    # statement could see it; that run is the answer to both.
    run = session.get(Run, made[0]) if made else open_manual_run(session, tenant_id, server_id)
    if run is None:
        raise RuntimeError(f"run-now of {server_id}: neither made nor found")
    return run


def cancel_waiting_scheduled_runs(session: orm.Session, schedule_id: int, now: dt.datetime) -> int:
    """A paused schedule's scheduled runs that have not started are cancelled: a tenant pauses
    for a maintenance window, and an image the tick made just before must not start in it.
    Images in flight finish; a run-now still runs."""
    ended = end_matching(
        session,
        RunState.CANCELLED,
        now,
        Reason.SCHEDULE_PAUSED,
        "the schedule was paused",
        Run.schedule_id == schedule_id,
        Run.trigger == "schedule",
        only_from=(RunState.PENDING,),
    )
    return len(ended)


def server_runs(
    session: orm.Session, tenant_id: str, server_id: str, limit: int, marker: int | None
) -> list[Run]:
    """The server's runs, newest first, `limit` at a time after the run `marker`."""
    query = sa.select(Run).where(Run.tenant_id == tenant_id, Run.server_id == server_id)
    if marker is not None:
        query = query.where(Run.id < marker)
    return list(session.scalars(query.order_by(Run.id.desc()).limit(limit)))


def recorded_image_ids(
    session: orm.Session, tenant_id: str, server_id: str, image_ids: Iterable[str]
) -> set[str]:
    """Which of these images the server's runs recorded: images the service made."""
    ids = list(image_ids)
    if not ids:
        return set()
    return set(
        session.scalars(
            sa.select(Run.image_id).where(
                Run.tenant_id == tenant_id, Run.server_id == server_id, Run.image_id.in_(ids)
            )
        )
    )


# -- moving runs ----------------------------------------------------------------------------


def move(run: Run, target: RunState) -> None:
    """Put a loaded (and locked) run in `target`, as TRANSITIONS allows; a final state only
    through `end`, which announces it."""
    _refuse_final(target)
    _move(run, target)


def _move(run: Run, target: RunState) -> None:
    if target not in TRANSITIONS[RunState(run.state)]:
        raise IllegalTransition(f"run {run.id}: {run.state} -> {target}")
    run.state = target


def moving(
    target: RunState, *where: sa.ColumnElement[bool], only_from: Iterable[RunState] = ()
) -> sa.Update:
    """UPDATE runs SET state = target WHERE state IN (the states allowed to move to target).

    `only_from` narrows the sources to some of those; `where` adds the caller's conditions.
    A final state only through `end_matching`, which announces it.
    """
    _refuse_final(target)
    return _moving(target, *where, only_from=only_from)


def _refuse_final(target: RunState) -> None:
    if target in FINAL:
        raise IllegalTransition(f"{target} is final: end runs through end or end_matching")


def _moving(
    target: RunState, *where: sa.ColumnElement[bool], only_from: Iterable[RunState] = ()
) -> sa.Update:
    allowed = sources(target)
    narrowed = tuple(only_from) or allowed
    if not set(narrowed) <= set(allowed):
        raise IllegalTransition(f"{narrowed} -> {target}")
    return sa.update(Run).where(Run.state.in_(narrowed), *where).values(state=target)


def in_states(states: frozenset[RunState]) -> sa.ColumnElement[bool]:
    """`runs.state IN (...)` for a set of states, in a stable order."""
    return Run.state.in_(in_order(states))


# -- ending runs: one failure path for the workers and the tick -----------------------------


def end(
    run: Run,
    target: RunState,
    now: dt.datetime,
    reason: Reason | None,
    error: str | None,
    hooked: Set[str] | None = None,
) -> None:
    """End a loaded run: its final state, when, and (failing) why, as code and as text.

    Its webhook event is written in the run's own session, so it commits, or rolls back,
    with the end. `hooked`: the tenants with a webhook, when the caller, ending many runs in
    one transaction, has read them once already.
    """
    session = orm.object_session(run)
    if session is None:
        raise RuntimeError(f"run {run.id} ends outside a session: its event would be lost")
    _move(run, target)
    run.finished_at = now
    run.lease_until = None
    if error is not None:
        run.error = error
    if reason is not None:
        run.reason = reason
    announce_ended(session, [run], now, hooked)


#: What an UPDATE that ends runs returns: the run's public fields, and its tenant and server.
_ENDED_COLUMNS = (
    Run.id,
    Run.tenant_id,
    Run.server_id,
    Run.trigger,
    Run.scheduled_for,
    Run.started_at,
    Run.finished_at,
    Run.state,
    Run.image_id,
    Run.attempts,
    Run.reason,
    Run.error,
)


def end_matching(
    session: orm.Session,
    target: RunState,
    now: dt.datetime,
    reason: Reason | sa.ColumnElement[str],
    error: str | sa.ColumnElement[str],
    *where: sa.ColumnElement[bool],
    only_from: Iterable[RunState] = (),
) -> list[sa.Row]:
    """End every run matching `where`, as `end` ends one loaded run, in one statement;
    returns the ended runs' rows (`_ENDED_COLUMNS`)."""
    statement = _moving(target, *where, only_from=only_from).values(
        finished_at=now, lease_until=None, error=error, reason=reason
    )
    ended = session.execute(
        statement.returning(*_ENDED_COLUMNS),
        execution_options={"synchronize_session": "fetch"},
    ).all()
    announce_ended(session, ended, now)
    return ended


def announce_ended(
    session: orm.Session, ended: Sequence[Any], now: dt.datetime, hooked: Set[str] | None = None
) -> None:
    """Write the webhook event of each ended run whose tenant has a webhook (in `hooked`, if
    given, else as the database says)."""
    if hooked is None:
        hooked = outbox.hooked_tenants(session, {run.tenant_id for run in ended})
    events = [run_event(run) for run in ended if run.tenant_id in hooked]
    outbox.add_events(session, events, now)


def run_event(run: Any) -> outbox.NewEvent:
    """The event of an ended run: `run.succeeded` with its image, else `run.failed`."""
    return outbox.NewEvent(
        tenant_id=run.tenant_id,
        type=outbox.RUN_SUCCEEDED if run.state == RunState.DONE else outbox.RUN_FAILED,
        source=f"/v2/{run.tenant_id}/servers/{run.server_id}/rax-si-image-schedule",
        subject=f"runs/{run.id}",
        time=run.finished_at,
        data={"tenant_id": run.tenant_id, "server_id": run.server_id, "run": public_fields(run)},
    )


def wait_again(run: Run, not_before: dt.datetime, reason: Reason, error: str) -> None:
    """Send a run in flight back to PENDING: its place is freed and it waits until then."""
    move(run, RunState.PENDING)
    run.not_before = not_before
    run.image_id = None
    run.attempt_stamp = None
    run.lease_until = None
    run.reason = reason
    run.error = error


# -- the one time-out -----------------------------------------------------------------------


def deadline(admitted_at: dt.datetime, run_timeout_s: float) -> dt.datetime:
    """A run admitted then may stay in flight, over all its attempts, until this."""
    return admitted_at + dt.timedelta(seconds=run_timeout_s)


def past_deadline(now: dt.datetime) -> sa.ColumnElement[bool]:
    return Run.deadline_at < now


def is_past_deadline(run: Run, now: dt.datetime) -> bool:
    """`past_deadline` for a run already loaded, and locked by whoever asks."""
    return run.deadline_at is not None and run.deadline_at < now


def time_out(
    session: orm.Session, now: dt.datetime, *where: sa.ColumnElement[bool]
) -> list[tuple[str, str]]:
    """End TIMED_OUT the runs in flight past their deadline (and matching `where`).

    The tick calls it for every such run its lock reaches, a poll for a run it holds.
    Returns (tenant, server) pairs whose retention should run.
    """
    timed_out = end_matching(
        session,
        RunState.TIMED_OUT,
        now,
        Reason.TIMED_OUT,
        sa.func.coalesce(Run.error + "; ", "") + TIMED_OUT_ERROR,
        past_deadline(now),
        *where,
    )
    return [(run.tenant_id, run.server_id) for run in timed_out]
