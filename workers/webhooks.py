"""Delivering webhook events: claim due events from the outbox, POST each to its tenant's
URL (checked again, and connected to by the checked address), settle what happened.

An HTTP call is never made inside a database transaction: events are claimed and committed
under a lease, posted, then settled in a second transaction.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time

import certifi
import urllib3

from common import outbox
from common.db import transaction
from common.destinations import Destination, RefusedDestination, Resolver, check_destination
from common.destinations import resolve as system_resolve
from workers.runtime import Runtime

log = logging.getLogger("scheduled_images.workers")

#: Events claimed at a time; each batch is posted in parallel, then settled.
BATCH = 20
#: Receivers posted to at once by one task.
PARALLEL = 8
#: Longest a reason for a failed attempt is kept, for the deliveries listing.
ERROR_CHARS = 300
#: The certificate authorities a receiver's certificate must chain to (requests' own).
CA_BUNDLE = certifi.where()


@dataclasses.dataclass(frozen=True)
class Delivered:
    """What one run of the delivery task did, for its log line and return value."""

    delivered: int = 0
    retrying: int = 0
    gave_up: int = 0


def retry_rule(rt: Runtime) -> outbox.RetryRule:
    return outbox.RetryRule(
        first_delay_s=rt.settings.webhook_retry_delay_s,
        max_delay_s=rt.settings.webhook_retry_max_delay_s,
        give_up_after_s=rt.settings.webhook_give_up_s,
    )


def lease_s(rt: Runtime) -> float:
    """Long enough for a batch of posts that all time out, so a live worker's claim holds."""
    rounds = -(-BATCH // PARALLEL)
    return rounds * rt.settings.webhook_timeout_s * 2 + 30


def deliver_due(rt: Runtime, budget_s: float, resolver: Resolver = system_resolve) -> Delivered:
    """Deliver due events, batch after batch, until none is due or the budget is spent."""
    started = time.monotonic()
    counts = {outbox.EVENT_DELIVERED: 0, outbox.EVENT_PENDING: 0, outbox.EVENT_GAVE_UP: 0}
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        while time.monotonic() - started < budget_s:
            with transaction(rt.sessions) as session:
                claimed = outbox.claim_due(session, rt.clock(), lease_s(rt), BATCH)
            if not claimed:
                break
            results = list(pool.map(lambda event: post(rt, event, resolver), claimed))
            with transaction(rt.sessions) as session:
                for event, result in zip(claimed, results, strict=True):
                    state = outbox.settle(session, event, result, rt.clock(), retry_rule(rt))
                    counts[state] += 1
    return Delivered(
        counts[outbox.EVENT_DELIVERED], counts[outbox.EVENT_PENDING], counts[outbox.EVENT_GAVE_UP]
    )


def post(rt: Runtime, event: outbox.Claimed, resolver: Resolver) -> outbox.Result:
    """One attempt at one event; never raises."""
    if event.url is None or event.secret is None:
        return outbox.Result(error="the tenant has no webhook")
    try:
        destination = check_destination(event.url, rt.settings.webhook_allow_private, resolver)
    except RefusedDestination as refused:
        return outbox.Result(error=f"refused: {refused}"[:ERROR_CHARS])
    body = event.body.encode()
    headers = {
        "Host": destination.host_header,
        "Content-Type": outbox.CONTENT_TYPE,
        "User-Agent": "scheduled-images-webhooks/1",
        outbox.SIGNATURE_HEADER: outbox.signature(event.secret, body),
    }
    try:
        status = _send(destination, body, headers, rt.settings.webhook_timeout_s)
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", None) or error
        log.info(
            "webhook attempt failed",
            extra={"tenant_id": event.tenant_id, "event_id": str(event.id), "error": str(reason)},
        )
        return outbox.Result(error=f"{type(reason).__name__}: {reason}"[:ERROR_CHARS])
    return outbox.Result(status_code=status)


def _send(destination: Destination, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST to the checked address itself, never to a fresh lookup of the name; redirects are
    answers, not followed: a 3xx could lead anywhere the check would have refused."""
    options: dict = {
        "timeout": urllib3.Timeout(connect=timeout_s, read=timeout_s),
        "retries": False,
        "maxsize": 1,
    }
    if destination.scheme == "https":
        # The certificate must name the host of the URL, whatever address was connected to.
        options.update(
            server_hostname=destination.host,
            assert_hostname=destination.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_BUNDLE,
        )
        pool_class: type[urllib3.HTTPConnectionPool] = urllib3.HTTPSConnectionPool
    else:
        pool_class = urllib3.HTTPConnectionPool
    with pool_class(destination.addresses[0], destination.port, **options) as pool:
        response = pool.urlopen(
            "POST",
            destination.target,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        # The status is all that counts; the body is not read, so a receiver cannot hold the
        # worker by streaming one.
        return response.status
