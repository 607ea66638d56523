"""Webhooks for real: runs ended by worker processes are POSTed, signed, to a receiver on
loopback by the webhook pool; a Redis stopped while the events are due only delays them, and
each is delivered once when it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from common import outbox
from common.clock import utcnow
from common.db import transaction
from common.models import WebhookEvent
from common.runs import RunState
from tests.support.processes import wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-of-the-tenant"
PRIVATE = {"WEBHOOK_ALLOW_PRIVATE": "true"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver(SECRET)
    yield running
    running.stop()
    assert running.problems == []


def events(pipeline) -> list[WebhookEvent]:  # type: ignore[no-untyped-def]
    with pipeline.sessions() as session:
        return list(session.scalars(sa.select(WebhookEvent)))


def test_events_due_while_redis_is_down_are_delivered_once_it_is_back(pipeline, receiver) -> None:
    with transaction(pipeline.sessions) as session:
        outbox.put_webhook(session, "tenant-a", receiver.url, SECRET, utcnow())
    [done] = pipeline.cloud.add_servers("tenant-a", 1, disk_gb=5)
    [failing] = pipeline.cloud.add_servers("tenant-a", 1, fault="create_error")
    [unhooked] = pipeline.cloud.add_servers("tenant-b", 1, disk_gb=5)
    for tenant, server in (("tenant-a", done), ("tenant-a", failing), ("tenant-b", unhooked)):
        pipeline.enable(tenant, server)
    # The image pipeline, and beat; no webhook pool yet, so the events wait, due.
    pipeline.worker(**PRIVATE)
    pipeline.beat(**PRIVATE)
    runs = {r.server_id: r for r in pipeline.wait_runs_final(3, timeout=90)}
    assert (runs[done].state, runs[failing].state) == (RunState.DONE, RunState.FAILED)
    assert [e.state for e in events(pipeline)] == ["pending", "pending"]

    pipeline.redis.stop()
    pipeline.worker(queues="webhook", concurrency=2, **PRIVATE)
    time.sleep(5)
    assert receiver.received == []
    assert {e.state for e in events(pipeline)} == {"pending"}

    pipeline.redis.start()
    got = receiver.wait_for(2, timeout=60)
    # Several more beats and deliveries: nothing is sent twice.
    time.sleep(4)
    assert len(receiver.received) == 2
    stored = {str(e.id): e for e in events(pipeline)}
    assert {e["id"] for e in got} == set(stored)
    by_server = {e["data"]["server_id"]: e for e in got}
    assert by_server[done]["type"] == "run.succeeded"
    assert by_server[failing]["type"] == "run.failed"
    assert by_server[failing]["data"]["run"]["state"] == "failed"
    assert by_server[done]["data"]["run"]["image_id"] == runs[done].image_id
    wait_for(
        lambda: all(e.state == "delivered" and e.attempts == 1 for e in events(pipeline)),
        10,
        "the deliveries settled",
    )
    for event in events(pipeline):
        assert json.loads(event.body)["id"] == str(event.id)
