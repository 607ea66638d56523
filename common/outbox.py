"""The webhook outbox: events written in the transaction that caused them, claimed and
settled by the delivery worker, and the retry rule between attempts.

An event is a CloudEvents 1.0 structured JSON body, built once when it is written: every
attempt sends the same bytes under the same id, signed with the tenant's current secret.
PostgreSQL holds the events, so a broker that is down only delays them, and an event of a
change that rolled back never existed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from common.clock import iso_z
from common.db import delete_batch
from common.models import (
    EVENT_DELIVERED,
    EVENT_GAVE_UP,
    EVENT_PENDING,
    Webhook,
    WebhookAttempt,
    WebhookEvent,
)

#: A run ended with its image ACTIVE.
RUN_SUCCEEDED = "run.succeeded"
#: A run ended without an image: failed, timed out, skipped or cancelled (`data.run.state`).
RUN_FAILED = "run.failed"
#: A schedule became stale (API.md's definition).
SCHEDULE_STALE = "schedule.stale"
EVENT_TYPES = (RUN_SUCCEEDED, RUN_FAILED, SCHEDULE_STALE)
#: The header that carries `sha256=<hex HMAC-SHA256 of the body with the secret>`.
SIGNATURE_HEADER = "X-SI-Signature"
#: The media type of a structured-mode CloudEvent in JSON.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """What happened, before it has an id: the CloudEvents attributes and the data."""

    tenant_id: str
    type: str
    source: str
    subject: str
    time: dt.datetime
    data: dict[str, Any]


def cloud_event(event_id: uuid.UUID, event: NewEvent) -> str:
    """The event as the receiver gets it: CloudEvents 1.0, structured mode, JSON."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(event_id),
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": iso_z(event.time),
            "datacontenttype": "application/json",
            "data": event.data,
        },
        separators=(",", ":"),
    )


def signature(secret: str, body: bytes) -> str:
    """The value of SIGNATURE_HEADER for `body`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def hooked_tenants(session: orm.Session, tenant_ids: Iterable[str]) -> set[str]:
    """Those of the tenants that have a webhook: only their events are written."""
    wanted = set(tenant_ids)
    if not wanted:
        return set()
    return set(session.scalars(sa.select(Webhook.tenant_id).where(Webhook.tenant_id.in_(wanted))))


def add_events(
    session: orm.Session, events: Sequence[NewEvent], now: dt.datetime
) -> list[uuid.UUID]:
    """Write the events, due now, in the caller's transaction; returns their ids."""
    rows = []
    for event in events:
        event_id = uuid.uuid4()
        rows.append(
            {
                "id": event_id,
                "tenant_id": event.tenant_id,
                "type": event.type,
                "body": cloud_event(event_id, event),
                "created_at": now,
                "state": EVENT_PENDING,
                "next_attempt_at": now,
                "attempts": 0,
            }
        )
    if rows:
        session.execute(sa.insert(WebhookEvent), rows)
    return [row["id"] for row in rows]


# -- delivering ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetryRule:
    """When an event that was not delivered is tried again, and when it is given up.

    The n-th retry waits `first_delay_s` times 2 to the n-1, at most `max_delay_s`; the last
    attempt is made at `give_up_after_s` after the event, and after it the event is given up.
    """

    first_delay_s: float
    max_delay_s: float
    give_up_after_s: float

    def next_attempt(
        self, created_at: dt.datetime, attempts: int, now: dt.datetime
    ) -> dt.datetime | None:
        """After `attempts` failed attempts, the next one; None: give up."""
        deadline = created_at + dt.timedelta(seconds=self.give_up_after_s)
        if now >= deadline:
            return None
        delay = min(self.first_delay_s * 2 ** max(attempts - 1, 0), self.max_delay_s)
        return min(now + dt.timedelta(seconds=delay), deadline)


@dataclasses.dataclass(frozen=True)
class Claimed:
    """An event a worker holds until `lease_until`, with where it goes and its key."""

    id: uuid.UUID
    tenant_id: str
    type: str
    body: str
    created_at: dt.datetime
    attempt: int
    lease_until: dt.datetime
    url: str | None
    secret: str | None = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Result:
    """What one attempt got: the receiver's status, or why nothing was answered."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(session: orm.Session, now: dt.datetime, lease_s: float, limit: int) -> list[Claimed]:
    """Take up to `limit` due events for one attempt each, leased for `lease_s`.

    SKIP LOCKED lets several workers claim side by side; the lease is the next attempt's
    time, so an event whose worker died before settling it is due again when it runs out.
    """
    events = list(
        session.scalars(
            sa.select(WebhookEvent)
            .where(WebhookEvent.state == EVENT_PENDING, WebhookEvent.next_attempt_at <= now)
            .order_by(WebhookEvent.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    hooks = {
        hook.tenant_id: hook
        for hook in session.scalars(
            sa.select(Webhook).where(Webhook.tenant_id.in_({e.tenant_id for e in events}))
        )
    }
    lease_until = now + dt.timedelta(seconds=lease_s)
    claimed = []
    for event in events:
        event.attempts += 1
        event.next_attempt_at = lease_until
        hook = hooks.get(event.tenant_id)
        claimed.append(
            Claimed(
                id=event.id,
                tenant_id=event.tenant_id,
                type=event.type,
                body=event.body,
                created_at=event.created_at,
                attempt=event.attempts,
                lease_until=lease_until,
                url=hook.url if hook else None,
                secret=hook.secret if hook else None,
            )
        )
    return claimed


def settle(
    session: orm.Session, claimed: Claimed, result: Result, now: dt.datetime, rule: RetryRule
) -> str:
    """Record the attempt, and deliver, retry or give up the event; returns its state.

    Only the holder of the current lease moves the event on: a worker that overran its lease
    records its attempt but leaves the event to the worker that claimed it since.
    """
    session.add(
        WebhookAttempt(
            event_id=claimed.id,
            tenant_id=claimed.tenant_id,
            type=claimed.type,
            attempted_at=now,
            attempt=claimed.attempt,
            status_code=result.status_code,
            error=result.error,
        )
    )
    if result.delivered:
        state, next_at = EVENT_DELIVERED, None
    elif claimed.url is None:
        # Written as its webhook was being deleted: there is nowhere to send it.
        state, next_at = EVENT_GAVE_UP, None
    else:
        next_at = rule.next_attempt(claimed.created_at, claimed.attempt, now)
        state = EVENT_PENDING if next_at is not None else EVENT_GAVE_UP
    session.execute(
        sa.update(WebhookEvent)
        .where(
            WebhookEvent.id == claimed.id,
            WebhookEvent.state == EVENT_PENDING,
            WebhookEvent.next_attempt_at == claimed.lease_until,
        )
        .values(
            state=state,
            next_attempt_at=next_at,
            finished_at=None if state == EVENT_PENDING else now,
        )
    )
    return state


def trim_finished(
    session: orm.Session, now: dt.datetime, keep_days: int, limit: int = 10000
) -> int:
    """Delivered and given-up events older than the history setting go, with their attempts."""
    oldest = now - dt.timedelta(days=keep_days)
    return delete_batch(
        session,
        WebhookEvent,
        WebhookEvent.state != EVENT_PENDING,
        WebhookEvent.finished_at < oldest,
        limit=limit,
    )


# -- the tenant's webhook --------------------------------------------------------------------


def put_webhook(
    session: orm.Session, tenant_id: str, url: str, secret: str, now: dt.datetime
) -> Webhook:
    """Set the tenant's one webhook; events not yet delivered go to the new URL."""
    hook = session.get(Webhook, tenant_id, with_for_update=True)
    if hook is None:
        hook = Webhook(tenant_id=tenant_id, created_at=now)
        session.add(hook)
    hook.url, hook.secret, hook.updated_at = url, secret, now
    return hook


def delete_webhook(session: orm.Session, tenant_id: str, now: dt.datetime) -> None:
    """Remove the tenant's webhook; the events still waiting are given up, having nowhere to
    go, and their attempts stay listed."""
    session.execute(sa.delete(Webhook).where(Webhook.tenant_id == tenant_id))
    session.execute(
        sa.update(WebhookEvent)
        .where(WebhookEvent.tenant_id == tenant_id, WebhookEvent.state == EVENT_PENDING)
        .values(state=EVENT_GAVE_UP, next_attempt_at=None, finished_at=now)
    )


def attempts_of(
    session: orm.Session, tenant_id: str, limit: int, marker: int | None
) -> list[WebhookAttempt]:
    """The tenant's delivery attempts, newest first, `limit` at a time after `marker`."""
    query = sa.select(WebhookAttempt).where(WebhookAttempt.tenant_id == tenant_id)
    if marker is not None:
        query = query.where(WebhookAttempt.id < marker)
    return list(session.scalars(query.order_by(WebhookAttempt.id.desc()).limit(limit)))
