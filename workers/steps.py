"""The steps of a run, as the tasks perform them: create an image, poll images in progress,
prune retention.

Each step loads runs, calls the cloud, and saves through `common.runs`, guarding every change
with the state it expects, so that a step repeated by a redelivered or republished message
does nothing new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Set

import sqlalchemy as sa
from sqlalchemy import orm

from common import outbox
from common.compute.base import (
    ACTIVE,
    ERROR,
    ComputeError,
    Image,
    ServerBusy,
    ServerNotFound,
)
from common.db import transaction
from common.images import image_metadata, image_name, images_to_delete, is_scheduled_image_of
from common.logging import log_context
from common.models import Run, Schedule
from common.runs import Reason, RunState, end, is_past_deadline, move, time_out, wait_again
from workers import metrics
from workers.runtime import Runtime

log = logging.getLogger("scheduled_images.workers")

# Weight of the newest image in a server's expected duration.
DURATION_WEIGHT = 0.3
#: Share of its expected duration an image is left alone before its first poll: durations
#: spread around their expectation, and a poll much earlier is almost always wasted.
FIRST_POLL_SHARE = 0.9


@dataclasses.dataclass
class Outcome:
    """What a step leaves for the caller to publish once its changes are committed."""

    prune: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (tenant, server)
    freed: int = 0


# -- create ---------------------------------------------------------------------------------


def create_image(rt: Runtime, run_id: int) -> Outcome:
    """Create the run's image, once: the id is recorded before anything else happens."""
    return create_images(rt, [run_id])


def create_images(rt: Runtime, run_ids: list[int]) -> Outcome:
    """Create the images of admitted runs, each once: a stamp for them all committed first,
    then the cloud asked run by run and the image ids recorded together."""
    outcome = Outcome()
    attempts = _stamp_attempts(rt, run_ids)
    if not attempts:
        return outcome
    # Step two holds the runs' row locks across the create calls: a duplicate message for
    # the same runs waits here, then finds the recorded image ids and does nothing.
    with transaction(rt.sessions) as session:
        runs = _locked_runs(session, attempts, RunState.CREATING)
        schedules = _schedules_of(session, runs)
        for run in runs:
            schedule = schedules.get(run.schedule_id or 0)
            with log_context(tenant_id=run.tenant_id, server_id=run.server_id, run_id=run.id):
                if run.image_id is None:
                    resumed = attempts[run.id] is Attempt.RESUMED
                    _create_or_find(rt, session, run, schedule, outcome, resumed)
                if run.state == RunState.CREATING and run.image_id is not None:
                    move(run, RunState.SAVING)
                    run.next_poll_at = rt.clock() + _first_poll_after(rt, schedule)
    return outcome


def _locked_runs(session: orm.Session, run_ids: Iterable[int], *states: RunState) -> list[Run]:
    """The runs among `run_ids` in one of `states`, locked in id order as every locker of
    several runs takes them, so two batches that share runs never deadlock."""
    query = (
        sa.select(Run)
        .where(Run.id.in_(sorted(run_ids)), Run.state.in_(states))
        .order_by(Run.id)
        .with_for_update()
    )
    return list(session.scalars(query))


def _first_poll_after(rt: Runtime, schedule: Schedule | None) -> dt.timedelta:
    """An image is not looked at before most of the duration its server's images took so far:
    polls of images that cannot be ready yet would only load the cloud's API. A server with
    no history yet is polled at the poll interval, as its default expectation may be far off."""
    interval = rt.settings.poll_interval_s
    if schedule is None or not schedule.duration_samples:
        return dt.timedelta(seconds=interval)
    return dt.timedelta(seconds=max(interval, FIRST_POLL_SHARE * schedule.expected_duration_s))


class Attempt(enum.Enum):
    #: This task stamped the attempt: no image can carry its name yet.
    NEW = "new"
    #: The attempt was stamped before (a redelivered or republished message): an image with
    #: its name may exist.
    RESUMED = "resumed"


def _stamp_attempts(rt: Runtime, run_ids: list[int]) -> dict[int, Attempt]:
    """Step one, committed on its own: each attempt's stamp, which the image's name carries.

    Runs no longer to create (ended, or already past creating) are left out.
    """
    now = rt.clock()
    attempts = {}
    with transaction(rt.sessions) as session:
        for run in _locked_runs(session, run_ids, RunState.ADMITTED, RunState.CREATING):
            attempts[run.id] = Attempt.RESUMED
            if run.state == RunState.ADMITTED:
                move(run, RunState.CREATING)
                run.attempts += 1
                run.attempt_stamp = int(now.timestamp())
                run.started_at = run.started_at or now
                attempts[run.id] = Attempt.NEW
            run.lease_until = now + dt.timedelta(seconds=rt.settings.lease_s)
    return attempts


def _create_or_find(
    rt: Runtime,
    session: orm.Session,
    run: Run,
    schedule: Schedule | None,
    outcome: Outcome,
    resumed: bool,
) -> None:
    server_name = schedule.server_name if schedule else run.server_id
    name = image_name(run.weekly, server_name, run.attempt_stamp or 0)
    now = rt.clock()
    try:
        # Only a resumed attempt can have made its image already (a worker killed after the
        # cloud's answer, before the commit): a new one saves the cloud a listing.
        existing = _made_before(rt, session, run, name) if resumed else []
        if existing:
            run.image_id = existing[0]
            log.info("found the image made before a restart", extra={"image_id": run.image_id})
            return
        run.image_id = rt.compute.create_image(
            run.tenant_id, run.server_id, name, image_metadata(run.server_id)
        )
        log.info("image requested", extra={"image_id": run.image_id, "image_name": name})
    except ServerNotFound:
        _end(run, RunState.CANCELLED, now, Reason.SERVER_GONE, "the server no longer exists")
        if schedule is not None and schedule.server_gone_at is None:
            schedule.server_gone_at = now
        outcome.freed += 1
        log.warning("server gone; run cancelled and schedule stopped")
    except ServerBusy as error:
        _wait_for_busy_server(rt, run, now, error)
        outcome.freed += 1
        log.info("server busy; run waits", extra={"retry_at": run.not_before.isoformat()})
    except ComputeError as error:
        _attempt_failed(rt, run, now, Reason.CREATE_ERROR, f"create failed: {error}", outcome)


def _made_before(rt: Runtime, session: orm.Session, run: Run, name: str) -> list[str]:
    named = [
        image.id
        for image in rt.compute.list_server_images(run.tenant_id, run.server_id)
        if image.name == name and is_scheduled_image_of(image, run.server_id)
    ]
    # The stamp is whole seconds, so a run started in the same second as the one before it
    # has that run's image's name: only an image no run has recorded was made by this one.
    return _unrecorded(session, run, named)


def _unrecorded(session: orm.Session, run: Run, image_ids: list[str]) -> list[str]:
    if not image_ids:
        return []
    recorded = set(
        session.scalars(
            sa.select(Run.image_id).where(
                Run.server_id == run.server_id, Run.id != run.id, Run.image_id.in_(image_ids)
            )
        )
    )
    return [i for i in image_ids if i not in recorded]


def _wait_for_busy_server(rt: Runtime, run: Run, now: dt.datetime, error: ServerBusy) -> None:
    """A busy server is no attempt: the run waits and tries again, the attempt not counted."""
    run.attempts -= 1
    wait_again(
        run,
        now + dt.timedelta(seconds=rt.settings.busy_retry_s),
        Reason.SERVER_BUSY,
        f"waiting: the server is busy with another image ({error})",
    )
    if run.attempts == 0:
        # No attempt made yet: the run's deadline starts with its first real attempt.
        run.deadline_at = None


# -- poll -----------------------------------------------------------------------------------


def poll_images(rt: Runtime, tenant_id: str, run_ids: list[int]) -> Outcome:
    """Look at the images of a tenant's runs that are saving, and settle the finished."""
    return poll_batch(rt, [(tenant_id, run_ids)])


def poll_batch(rt: Runtime, batch: list[tuple[str, list[int]]]) -> Outcome:
    """Look at the images of runs that are saving, given as (tenant, run ids), one cloud call
    a tenant and one transaction for all, and settle the finished."""
    outcome = Outcome()
    wanted = [(tenant_id, run_id) for tenant_id, run_ids in batch for run_id in run_ids]
    if not wanted:
        return outcome
    with transaction(rt.sessions) as session:
        runs = list(
            session.scalars(
                sa.select(Run)
                .where(sa.tuple_(Run.tenant_id, Run.id).in_(wanted), Run.state == RunState.SAVING)
                .order_by(Run.id)
                .with_for_update(skip_locked=True)
            )
        )
        checked, images = _look_at_images(rt, runs)
        if not checked:
            return outcome
        settling = _Settling(
            rt.clock(),
            outbox.hooked_tenants(session, {run.tenant_id for run in checked}),
            _schedules_of(session, [r for r in checked if _is_active(images, r)], lock=True),
        )
        for run in checked:
            with log_context(tenant_id=run.tenant_id, server_id=run.server_id, run_id=run.id):
                _settle(rt, session, run, images.get(run.image_id or ""), settling, outcome)
    return outcome


def _look_at_images(rt: Runtime, runs: list[Run]) -> tuple[list[Run], dict[str, Image]]:
    """The images of the runs, a cloud call a tenant, and the runs whose tenant answered;
    a tenant's runs the cloud could not answer for are polled again a poll interval on."""
    by_tenant: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_tenant[run.tenant_id].append(run)
    checked: list[Run] = []
    images: dict[str, Image] = {}
    for tenant_id, tenant_runs in by_tenant.items():
        try:
            images.update(
                rt.compute.get_images(tenant_id, [r.image_id for r in tenant_runs if r.image_id])
            )
        except ComputeError as error:
            with log_context(tenant_id=tenant_id):
                log.warning(
                    "could not check images; polled again later", extra={"error": str(error)}
                )
            _poll_later(rt, tenant_runs, rt.clock())
            continue
        checked.extend(tenant_runs)
    return checked, images


def _poll_later(rt: Runtime, runs: list[Run], now: dt.datetime) -> None:
    later = now + dt.timedelta(seconds=rt.settings.poll_interval_s)
    for run in runs:
        run.next_poll_at = later


@dataclasses.dataclass(frozen=True)
class _Settling:
    """What the runs of one poll share, each read once: the time, the tenants with a webhook
    and the schedules of the runs whose image is ready, locked."""

    now: dt.datetime
    hooked: Set[str]
    schedules: Mapping[int, Schedule]


def _is_active(images: Mapping[str, Image], run: Run) -> bool:
    image = images.get(run.image_id or "")
    return image is not None and image.status == ACTIVE


def _schedules_of(session: orm.Session, runs: list[Run], lock: bool = False) -> dict[int, Schedule]:
    """The runs' schedules, in one statement; locked, if asked, in id order as every locker
    takes them."""
    ids = sorted({run.schedule_id for run in runs if run.schedule_id is not None})
    if not ids:
        return {}
    query = sa.select(Schedule).where(Schedule.id.in_(ids)).order_by(Schedule.id)
    if lock:
        query = query.with_for_update()
    return {schedule.id: schedule for schedule in session.scalars(query)}


def _settle(
    rt: Runtime,
    session: orm.Session,
    run: Run,
    image: Image | None,
    batch: _Settling,
    outcome: Outcome,
) -> None:
    """One polled run: done, a failed attempt, timed out, or polled again later."""
    now = batch.now
    if image is not None and image.status == ACTIVE:
        _end(run, RunState.DONE, now, None, None, batch.hooked)
        _record_success(run, now, batch.schedules.get(run.schedule_id or 0), image)
        outcome.prune.append((run.tenant_id, run.server_id))
        outcome.freed += 1
        log.info("image active", extra={"image_id": run.image_id})
    elif image is None:
        why = "the image disappeared"
        _attempt_failed(rt, run, now, Reason.IMAGE_MISSING, why, outcome, batch.hooked)
    elif image.status == ERROR:
        why = "the image ended in ERROR"
        _attempt_failed(rt, run, now, Reason.IMAGE_ERROR, why, outcome, batch.hooked)
    # The row is locked by this poll: its deadline read here is the one to judge.
    elif is_past_deadline(run, now) and time_out(session, now, Run.id == run.id):
        metrics.observe_run_end(run, now)
        outcome.prune.append((run.tenant_id, run.server_id))
        outcome.freed += 1
        log.warning("run timed out", extra={"image_id": run.image_id})
    else:
        _poll_later(rt, [run], now)


def prune_server(rt: Runtime, tenant_id: str, server_id: str) -> int:
    """Apply the server's current retention; returns how many images were deleted."""
    return prune_servers(rt, [(tenant_id, server_id)])


def prune_servers(rt: Runtime, servers: list[tuple[str, str]]) -> int:
    """Apply each (tenant, server)'s current retention, their settings read in one query;
    returns how many images were deleted. A server the cloud cannot answer for is left to
    its next run's prune, and the others are pruned all the same."""
    if not servers:
        return 0
    with rt.sessions() as session:
        retentions = {
            (tenant_id, server_id): retention
            for tenant_id, server_id, retention in session.execute(
                sa.select(Schedule.tenant_id, Schedule.server_id, Schedule.retention).where(
                    Schedule.server_id.in_(sorted({server for _, server in servers}))
                )
            )
        }
    deleted = 0
    for tenant_id, server_id in servers:
        retention = retentions.get((tenant_id, server_id))
        if retention is not None:
            with log_context(tenant_id=tenant_id, server_id=server_id):
                deleted += _prune(rt, tenant_id, server_id, retention)
    return deleted


def _prune(rt: Runtime, tenant_id: str, server_id: str, retention: int) -> int:
    try:
        images = rt.compute.list_server_images(tenant_id, server_id)
    except ComputeError as error:
        log.warning("images not listed; retention waits", extra={"error": str(error)})
        return 0
    deleted = 0
    for image in images_to_delete(images, server_id, retention):
        try:
            rt.compute.delete_image(tenant_id, image.id)
            deleted += 1
        except ComputeError as error:
            # Already gone is fine; anything else is retried after the next run.
            log.info("image not deleted", extra={"image_id": image.id, "error": str(error)})
    if deleted:
        log.info("retention applied", extra={"deleted": deleted, "retention": retention})
    return deleted


def _attempt_failed(
    rt: Runtime,
    run: Run,
    now: dt.datetime,
    reason: Reason,
    why: str,
    outcome: Outcome,
    hooked: Set[str] | None = None,
) -> None:
    """An attempt failed: retry after a back-off, within the attempts and the run's deadline.

    The n-th retry waits RETRY_DELAY_S times n. A retry may start after the run's usual
    window, but never past the deadline set at the run's first admission (RUN_TIMEOUT_S):
    when the next attempt could not start before it, the run fails now.
    """
    outcome.freed += 1
    attempts, limit = run.attempts, rt.settings.retry_attempts
    retry_at = now + dt.timedelta(seconds=rt.settings.retry_delay_s * attempts)
    if attempts < limit and (run.deadline_at is None or retry_at < run.deadline_at):
        wait_again(run, retry_at, reason, f"{why} (attempt {attempts}); retrying")
        start_by = max(run.start_by, retry_at + dt.timedelta(seconds=rt.settings.poll_interval_s))
        run.start_by = start_by if run.deadline_at is None else min(start_by, run.deadline_at)
        log.warning(
            "attempt failed; retrying", extra={"error": why, "retry_at": retry_at.isoformat()}
        )
        return
    why = f"{why} (attempt {attempts} of {limit})"
    if attempts < limit:
        why += "; no time left before the run's deadline for another"
    _end(run, RunState.FAILED, now, reason, why, hooked)
    outcome.prune.append((run.tenant_id, run.server_id))
    log.warning("run failed", extra={"error": why, "attempts": attempts})


def _end(
    run: Run,
    state: RunState,
    now: dt.datetime,
    reason: Reason | None,
    error: str | None,
    hooked: Set[str] | None = None,
) -> None:
    end(run, state, now, reason, error, hooked)
    metrics.observe_run_end(run, now)


def _record_success(run: Run, now: dt.datetime, schedule: Schedule | None, image: Image) -> None:
    """The schedule's last success (what staleness reads) and its expected duration.

    In the transaction that ends the run DONE, with the schedule's row locked, so a schedule
    is never stale with its image made, nor fresh with the run rolled back.
    """
    if schedule is None:
        return
    if schedule.last_success_at is None or schedule.last_success_at < now:
        schedule.last_success_at = now
    # Fresh again: a later stale spell is announced anew.
    schedule.stale_announced_at = None
    if run.attempt_stamp is None:
        return
    observed = max(_finished_at(image, now) - run.attempt_stamp, 1.0)
    if schedule.duration_samples == 0:
        schedule.expected_duration_s = observed
    else:
        schedule.expected_duration_s += DURATION_WEIGHT * (observed - schedule.expected_duration_s)
    schedule.duration_samples += 1


def _finished_at(image: Image, now: dt.datetime) -> float:
    """When the image finished, as the cloud tells it (its last change), else now.

    Not the time of the poll that saw it: that is later by up to a poll, and an expectation
    learnt from it would creep up, each first poll waiting longer than the one before.
    """
    try:
        said = dt.datetime.fromisoformat(image.updated_at.replace("Z", "+00:00"))
    except ValueError:
        return now.timestamp()
    if said.tzinfo is None or said > now:
        return now.timestamp()
    return said.timestamp()
