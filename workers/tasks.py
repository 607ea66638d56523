"""The Celery tasks, in the order of a run's life: tick, create, poll, prune (and rebalance).

Thin edges: each calls the scheduler or a run step, then publishes what follows.

Every change is committed before the message that follows from it is published, and every
task can run twice without doing anything twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

from celery import Task
from kombu.utils.uuid import uuid
from sqlalchemy import exc

from common import outbox, schedules
from common.db import transaction
from common.runs import RunState
from common.runtime_settings import admission_limits
from scheduler import rebalances
from scheduler import tick as ticking
from scheduler.admission import admit_waiting_runs
from workers import metrics, steps, webhooks
from workers.celery_app import app
from workers.runtime import Runtime, runtime

T = TypeVar("T")
log = logging.getLogger("scheduled_images.workers")
metrics.install_celery_metrics()

# A database that is restarting answers again within seconds; ride it out instead of failing.
DB_RETRY = {
    "autoretry_for": (exc.OperationalError, exc.InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": None,
}
#: Runs one poll message checks, of one tenant or many: one transaction and one admission a
#: batch, one cloud call a tenant in it.
POLL_BATCH = 100
#: Admitted runs one create message carries: one stamp and one record of image ids a batch,
#: few enough that the last run's image is asked for soon after the first's.
CREATE_BATCH = 10
#: Servers one prune message carries: the runs a poll ended share a message.
PRUNE_BATCH = 100
#: Messages pipelined to Redis per round trip (kombu's producer batches), so that a tick can
#: publish thousands of runs without a round trip each.
PUBLISH_BATCH = 500
#: Seconds a tick spends making runs of due schedules before it admits and publishes.
TICK_BUDGET_S = 20.0
# A rebalance that finds another one re-planning looks again this much later.
REBALANCE_BUSY_RETRY_S = 10
#: Seconds one delivery task spends on due webhook events before it leaves the rest to the
#: next, well inside the task's time limit.
WEBHOOK_BUDGET_S = 60.0


@app.task(name="si.tick", **DB_RETRY)
def tick() -> dict:
    """Due polls are published; due schedules become runs; waiting runs are admitted.

    Polls first: a finished image holds its place under the cap until a poll sees it, so
    its poll should not wait for the runs made and admitted in the same tick.
    """
    rt = runtime()
    with transaction(rt.sessions) as session:
        polls = ticking.due_polls(
            session, rt.clock(), rt.settings.poll_interval_s, lease_s=rt.settings.lease_s
        )
    publish_polls(polls)
    made = _make_due_runs(rt)
    admitted = admit_and_publish(rt)
    summary = {"runs_made": made, "admitted": len(admitted), "polls": len(polls)}
    if any(summary.values()):
        log.info("tick", extra=summary)
    return summary


@app.task(name="si.sweep", **DB_RETRY)
def sweep() -> dict:
    """What leases, deadlines and windows end, each seconds long at the least: late runs end,
    and creates and rebalances whose lease ran out are published again."""
    rt = runtime()
    now = rt.clock()
    with transaction(rt.sessions) as session:
        skipped = ticking.skip_missed_runs(session, now)
        cancelled = ticking.cancel_orphaned_runs(session, now)
        timed_out = ticking.time_out_runs(session, now)
    # Counted once committed: a sweep retried after a rollback finds them again.
    metrics.count_runs_ended(
        {
            RunState.SKIPPED: skipped,
            RunState.CANCELLED: cancelled,
            RunState.TIMED_OUT: len(timed_out),
        }
    )
    with transaction(rt.sessions) as session:
        lost = ticking.lost_creates(session, rt.clock(), rt.settings.lease_s)
        lost_rebalances = rebalances.take_lost_jobs(session, rt.clock(), rt.settings.lease_s)
    publish_rebalances(lost_rebalances)
    publish_creates(lost)
    publish_prunes(timed_out)
    summary = {
        "timed_out": len(timed_out),
        "republished": len(lost),
        "rebalances_republished": len(lost_rebalances),
    }
    if any(summary.values()):
        log.info("sweep", extra=summary)
    return summary


@app.task(name="si.housekeeping", **DB_RETRY)
def housekeeping() -> dict:
    """What is measured in days, apart from the tick: old history (runs, rebalances, webhook
    events) trimmed, the schedules of servers long gone removed, schedules gone stale
    announced."""
    rt = runtime()
    now = rt.clock()
    with transaction(rt.sessions) as session:
        summary = {
            "runs_trimmed": ticking.trim_history(session, now, rt.settings.run_history_days),
            "rebalances_trimmed": rebalances.trim_finished(
                session, now, rt.settings.run_history_days
            ),
            "webhook_events_trimmed": outbox.trim_finished(
                session, now, rt.settings.run_history_days
            ),
            "schedules_removed": ticking.remove_gone_schedules(
                session, now, rt.settings.server_gone_grace_s
            ),
            "went_stale": schedules.announce_stale(session, now),
        }
    if any(summary.values()):
        log.info("housekeeping", extra=summary)
    return summary


def _make_due_runs(rt: Runtime) -> int:
    """Due schedules become runs, a committed batch at a time, within the tick's budget."""
    started = time.monotonic()
    made = 0
    while time.monotonic() - started < TICK_BUDGET_S:
        with transaction(rt.sessions) as session:
            batch = ticking.materialize_due_runs(session, rt.clock(), ticking.MATERIALIZE_BATCH)
        made += batch
        # A short batch took every due schedule not locked by another tick: asking again
        # would only walk the due index once more to find none.
        if batch < ticking.MATERIALIZE_BATCH:
            break
    return made


@app.task(name="si.create_images", **DB_RETRY)
def create_images(run_ids: list[int]) -> None:
    """Create the images of admitted runs; freed places are filled at once."""
    rt = runtime()
    _follow_up(rt, steps.create_images(rt, run_ids))


@app.task(name="si.create_image", **DB_RETRY)
def create_image(run_id: int) -> None:
    """Create an admitted run's image: a message an earlier version published."""
    rt = runtime()
    _follow_up(rt, steps.create_image(rt, run_id))


@app.task(name="si.poll_images", **DB_RETRY)
def poll_images(batch: list[tuple[str, list[int]]]) -> None:
    """Poll images in progress, given as (tenant, run ids); finished runs prune their servers."""
    rt = runtime()
    _follow_up(rt, steps.poll_batch(rt, [(tenant_id, run_ids) for tenant_id, run_ids in batch]))


@app.task(name="si.check_images", **DB_RETRY)
def check_images(tenant_id: str, run_ids: list[int]) -> None:
    """Poll a tenant's images in progress: a message an earlier version published."""
    rt = runtime()
    _follow_up(rt, steps.poll_images(rt, tenant_id, run_ids))


@app.task(name="si.prune_servers", **DB_RETRY)
def prune_servers(servers: list[tuple[str, str]]) -> None:
    """Apply the retention of each (tenant, server)."""
    steps.prune_servers(runtime(), [(tenant_id, server_id) for tenant_id, server_id in servers])


@app.task(name="si.prune_server", **DB_RETRY)
def prune_server(tenant_id: str, server_id: str) -> None:
    """Apply the server's retention: a message an earlier version published."""
    steps.prune_server(runtime(), tenant_id, server_id)


@app.task(
    name="si.rebalance",
    bind=True,
    time_limit=rebalances.TIME_LIMIT_S,
    soft_time_limit=rebalances.TIME_LIMIT_S - 30,
    **DB_RETRY,
)
def rebalance(self: Task, job_id: str) -> str:
    """Re-plan the fleet for a rebalance job; a repeated message for an ended job does nothing."""
    rt = runtime()
    outcome = rebalances.run_job(rt.sessions, job_id, rt.settings.inflight_cap, rt.clock)
    if outcome is rebalances.Outcome.BUSY:
        raise self.retry(countdown=REBALANCE_BUSY_RETRY_S)
    return outcome.value


@app.task(name="si.deliver_webhooks", **DB_RETRY)
def deliver_webhooks() -> dict:
    """Post due webhook events to their receivers."""
    rt = runtime()
    done = webhooks.deliver_due(rt, WEBHOOK_BUDGET_S)
    summary = dataclasses.asdict(done)
    if any(summary.values()):
        log.info("webhooks", extra=summary)
    return summary


def _follow_up(rt: Runtime, outcome: steps.Outcome) -> None:
    publish_prunes(outcome.prune)
    if outcome.freed:
        # A freed place is filled now rather than at the next tick.
        admit_and_publish(rt)


def admit_and_publish(rt: Runtime) -> list[int]:
    with transaction(rt.sessions) as session:
        cap, tenant_max = admission_limits(
            session, rt.settings.inflight_cap, rt.settings.tenant_inflight_max
        )
        admitted = admit_waiting_runs(
            session,
            cap,
            rt.clock(),
            rt.settings.lease_s,
            rt.settings.run_timeout_s,
            tenant_max=tenant_max,
        )
    publish_creates(admitted)
    return admitted


def publish_creates(run_ids: Iterable[int]) -> None:
    _publish(create_images, [(batch,) for batch in _batches(list(run_ids), CREATE_BATCH)])


def publish_polls(runs: Iterable[tuple[str, int]]) -> None:
    """One message a POLL_BATCH runs, however many tenants they belong to, each message's
    runs grouped by tenant: one cloud call a tenant."""
    messages = []
    for batch in _batches(sorted(runs), POLL_BATCH):
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for tenant_id, run_id in batch:
            by_tenant[tenant_id].append(run_id)
        messages.append((list(by_tenant.items()),))
    _publish(poll_images, messages)


def publish_rebalances(job_ids: Iterable[str]) -> None:
    # Not through `_publish`: its time limits in the message would override the task's own.
    for job_id in job_ids:
        rebalance.apply_async((job_id,))


def publish_prunes(servers: Iterable[tuple[str, str]]) -> None:
    pairs = sorted(set(servers))
    _publish(prune_servers, [(batch,) for batch in _batches(pairs, PRUNE_BATCH)])


def _batches(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _publish(task: Task, argument_lists: list[tuple]) -> None:
    """Publish one message per argument tuple, pipelined to Redis.

    Celery's own message building and sending (`app.amqp`), without `apply_async`'s
    per-call option merging and routing: the route and the options are worked out once for
    the whole batch.
    """
    if not argument_lists:
        return
    route = app.amqp.router.route({}, task.name, argument_lists[0], {}, task)
    limits = {
        "time_limit": app.conf.task_time_limit,
        "soft_time_limit": app.conf.task_soft_time_limit,
    }
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for args in argument_lists:
            message = app.amqp.create_task_message(
                uuid(),
                task.name,
                args,
                {},
                argsrepr=repr(args),
                kwargsrepr="{}",
                ignore_result=True,
                **limits,
            )
            app.amqp.send_task_message(producer, task.name, message, **route)
