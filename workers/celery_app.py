"""The Celery app: Redis broker, one queue per kind of work, settings for work never lost.

Nothing connects at import time; `configure(settings)` points the app at a broker.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from common.settings import Settings

TICK_QUEUE = "tick"
CREATE_QUEUE = "create"
POLL_QUEUE = "poll"
RETENTION_QUEUE = "retention"
# Rebalances: a minute of CPU and memory each, one at a time, kept off the tick and the
# creates that must not wait behind one.
PLAN_QUEUE = "plan"
# Webhook deliveries: posts to tenants' receivers, which may be slow, kept off the pipeline.
WEBHOOK_QUEUE = "webhook"
QUEUES = (TICK_QUEUE, CREATE_QUEUE, POLL_QUEUE, RETENTION_QUEUE, PLAN_QUEUE, WEBHOOK_QUEUE)
# Shared with the API's publisher (workers/publisher.py), which sends without `configure`.
TASK_ROUTES = {
    "si.tick": {"queue": TICK_QUEUE},
    "si.sweep": {"queue": TICK_QUEUE},
    "si.housekeeping": {"queue": TICK_QUEUE},
    "si.create_images": {"queue": CREATE_QUEUE},
    "si.create_image": {"queue": CREATE_QUEUE},
    "si.poll_images": {"queue": POLL_QUEUE},
    "si.check_images": {"queue": POLL_QUEUE},
    "si.prune_servers": {"queue": RETENTION_QUEUE},
    "si.prune_server": {"queue": RETENTION_QUEUE},
    "si.rebalance": {"queue": PLAN_QUEUE},
    "si.deliver_webhooks": {"queue": WEBHOOK_QUEUE},
}

# Tasks are short (a create call bounded by the compute timeout, a batch of image checks);
# hour-long waits between attempts live in PostgreSQL as `not_before`, never as countdowns.
TASK_TIME_LIMIT_S = 300
#: Real seconds between sweeps (late runs ended, lost creates published again) and between
#: webhook rounds, at the least: a tick faster than this (a clock run faster than real time)
#: does not make them run more often, since what they wait for is a lease, a deadline or a
#: window, seconds long or more, or a receiver that needs no answer sooner.
SWEEP_MIN_INTERVAL_S = 1.0
#: Real seconds between housekeeping tasks (history trimmed, gone schedules removed, stale
#: schedules announced), whatever CLOCK_SPEED.
HOUSEKEEPING_INTERVAL_S = 60.0
# Redis redelivers an unacknowledged message after the visibility timeout, even while the
# task still runs; it must be longer than any task or countdown or work runs twice. Faster
# recovery from a killed worker comes from the sweep's leases, not from this.
VISIBILITY_TIMEOUT_S = 3600

app = Celery("scheduled_images", include=["workers.tasks"])


def configure(settings: Settings, broker_url: str) -> Celery:
    from workers import runtime

    runtime.configure(settings)
    sweep_interval = max(settings.tick_interval_s, SWEEP_MIN_INTERVAL_S)
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=True,
        # Keep retrying a lost broker instead of giving up, so a Redis restart heals.
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "health_check_interval": 10,
            "socket_keepalive": True,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        },
        # Acknowledge after the task ran, and hand a killed worker's task to another: every
        # task is idempotent, so a second delivery is harmless and a lost one is not.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a slow create must not hold others hostage.
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # State lives in PostgreSQL; results would only fill Redis.
        task_ignore_result=True,
        result_backend=None,
        task_time_limit=TASK_TIME_LIMIT_S,
        task_soft_time_limit=TASK_TIME_LIMIT_S - 30,
        # Task events only while someone watches: Flower turns them on in every worker
        # (its enable_events, on by default) and keeps them on, so an unwatched worker does
        # not publish three events a task for nobody. "Sent" events would double the cost of
        # each publish in the tick.
        worker_send_task_events=False,
        task_send_sent_event=False,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=CREATE_QUEUE,
        task_routes=TASK_ROUTES,
        beat_schedule={
            "tick": {
                "task": "si.tick",
                "schedule": settings.tick_interval_s,
                # A tick older than its interval is useless: the next one does its work.
                "options": {"expires": max(settings.tick_interval_s * 2, 1.0)},
            },
            "sweep": {
                "task": "si.sweep",
                "schedule": sweep_interval,
                "options": {"expires": sweep_interval * 2},
            },
            # Its work is measured in days: every tick doing it would scan the schedules
            # a few times a second for nothing.
            "housekeeping": {
                "task": "si.housekeeping",
                "schedule": HOUSEKEEPING_INTERVAL_S,
                "options": {"expires": HOUSEKEEPING_INTERVAL_S},
            },
            # Events wait in PostgreSQL, so a delivery message lost or expired loses nothing:
            # the next one finds them.
            "deliver-webhooks": {
                "task": "si.deliver_webhooks",
                "schedule": sweep_interval,
                "options": {"expires": sweep_interval * 2},
            },
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app
