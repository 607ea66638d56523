"""Webhooks against PostgreSQL, over HTTP, with a receiver on loopback that checks every
signature: the API (who may set it, which URLs are refused, the secret never answered), the
outbox (one event per run that ends, in the same transaction: none for a change rolled back),
and the delivery worker on an injected clock (back-off, giving up after 24 hours, redirects
not followed, the address checked again and connected to, leases of a killed worker)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from api import create_app
from common import outbox
from common.compute.simulated import SimulatedDriver
from common.db import transaction
from common.models import Run, Webhook, WebhookAttempt, WebhookEvent
from common.runs import IllegalTransition, RunState, end, move, moving, request_run
from scheduler import tick
from scheduler.admission import admit_waiting_runs
from tests.conftest import Client, ServedApp
from tests.support.scheduled import scheduled_server
from tests.support.webhook_receiver import WebhookReceiver
from workers import steps, webhooks
from workers.runtime import Runtime

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
SECRET = "s3cret-that-signs-every-event"
PUBLIC_URL = "https://1.1.1.1/hooks/si"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver(SECRET)
    yield running
    running.stop()
    assert running.problems == []


@pytest.fixture
def private_api(settings, sessions, tokens) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    """The API of a private cloud: WEBHOOK_ALLOW_PRIVATE=true."""
    served = ServedApp(create_app(settings.replace(webhook_allow_private=True), sessions=sessions))
    yield Client(served.base, "alice", "tenant-a")
    served.stop()


def hook_url(client: Client, tenant: str = "tenant-a") -> str:
    return client.url(f"/v2/{tenant}/rax-si-webhook")


def put_hook(client: Client, url: str, secret: str = SECRET):  # type: ignore[no-untyped-def]
    return client.request("PUT", hook_url(client), json={"webhook": {"url": url, "secret": secret}})


def deliveries(client: Client, **query: object) -> list[dict]:
    answer = client.request("GET", hook_url(client) + "/deliveries", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


# -- the API ---------------------------------------------------------------------------------


def test_a_creator_sets_and_deletes_the_webhook_and_its_secret_is_never_answered(alice) -> None:
    answer = put_hook(alice, PUBLIC_URL)
    assert answer.status_code == 200, answer.text
    assert answer.json()["webhook"]["url"] == PUBLIC_URL
    olive = alice.as_token("olive")
    read = olive.request("GET", hook_url(alice))
    assert read.status_code == 200 and read.json()["webhook"]["url"] == PUBLIC_URL
    for body in (answer.text, read.text):
        assert SECRET not in body and "secret" not in body
    assert put_hook(olive, "https://1.0.0.1/").status_code == 403
    assert olive.request("DELETE", hook_url(alice)).status_code == 403
    assert alice.as_token("bob").request("GET", hook_url(alice)).status_code == 403
    assert alice.request("DELETE", hook_url(alice)).status_code == 202
    gone = alice.request("GET", hook_url(alice))
    assert gone.status_code == 404 and "itemNotFound" in gone.json()


def test_the_openapi_document_describes_the_webhook_and_hides_the_secret(alice) -> None:
    document = alice.request("GET", alice.url("/openapi.json")).json()
    assert {"/v2/{tenant_id}/rax-si-webhook", "/v2/{tenant_id}/rax-si-webhook/deliveries"} <= set(
        document["paths"]
    )
    schemas = document["components"]["schemas"]
    for name in ("WebhookIn", "WebhookOut", "DeliveryOut"):
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert "secret" not in schemas["WebhookOut"]["properties"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://169.254.10.1/hook", "link-local"),
        ("http://0.0.0.0/hook", "not a public"),
        ("ftp://1.1.1.1/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https:///no-host", "no host"),
        ("https://user:pw@1.1.1.1/hook", "user or password"),
    ],
)
def test_a_url_the_service_may_not_reach_is_refused_and_nothing_changes(
    alice, url: str, problem: str
) -> None:
    assert put_hook(alice, PUBLIC_URL).status_code == 200
    answer = put_hook(alice, url, secret="another-secret-of-16+")
    assert answer.status_code == 400, answer.text
    message = answer.json()["badRequest"]["message"]
    assert message.startswith("webhook.url: ") and problem in message, message
    assert alice.request("GET", hook_url(alice)).json()["webhook"]["url"] == PUBLIC_URL


def test_allow_private_lets_loopback_and_private_through_never_link_local(private_api) -> None:
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/", "http://10.1.2.3/hook"):
        assert put_hook(private_api, url).status_code == 200, url
    for url, problem in (
        ("http://169.254.169.254/", "metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
    ):
        answer = put_hook(private_api, url)
        assert answer.status_code == 400 and problem in answer.text, (url, answer.text)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"webhook": {"url": PUBLIC_URL, "secret": "fifteen-chars!!"}}, "webhook.secret"),
        ({"webhook": {"url": PUBLIC_URL, "secret": "x" * 257}}, "webhook.secret"),
        ({"webhook": {"secret": SECRET}}, "webhook.url"),
        ({"webhook": {"url": PUBLIC_URL, "secret": SECRET, "events": []}}, "webhook.events"),
        ({"url": PUBLIC_URL}, "webhook"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(alice, body: dict, named: str) -> None:
    answer = alice.request("PUT", hook_url(alice), json=body)
    assert answer.status_code == 400 and named in answer.json()["badRequest"]["message"]
    assert alice.request("GET", hook_url(alice)).status_code == 404


def test_a_body_that_is_not_json_is_answered_415(alice) -> None:
    answer = alice.request(
        "PUT", hook_url(alice), data="url=x", headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 415


# -- the outbox ------------------------------------------------------------------------------


def _hook(sessions, tenant: str, url: str, secret: str = SECRET) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        outbox.put_webhook(session, tenant, url, secret, NOW)


def _server_with_schedule(sessions, cloud, tenant: str = "tenant-a", fault=None) -> str:  # type: ignore[no-untyped-def]
    return scheduled_server(sessions, cloud, tenant, NOW, fault)


def _saving_run(sessions, settings, cloud, tenant: str = "tenant-a") -> tuple[int, Runtime]:  # type: ignore[no-untyped-def]
    """A run whose image is being made at NOW; the runtime it returns, and its cloud, are five
    minutes on, past the image's end (the simulated cloud's times follow its own clock)."""
    server = _server_with_schedule(sessions, cloud, tenant)
    with transaction(sessions) as session:
        run_id = request_run(session, tenant, server, NOW).id
    with transaction(sessions) as session:
        admit_waiting_runs(session, cap=10, now=NOW, lease_s=30, run_timeout_s=600)

    def at(moment: dt.datetime) -> Runtime:
        clock = lambda: moment  # noqa: E731
        return Runtime(settings, sessions, SimulatedDriver(sessions, 0.01, clock), clock)

    steps.create_image(at(NOW), run_id)
    return run_id, at(NOW + dt.timedelta(minutes=5))


def _events(sessions) -> list[WebhookEvent]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return list(session.scalars(sa.select(WebhookEvent).order_by(WebhookEvent.created_at)))


def test_a_run_that_ends_writes_one_event_with_its_public_fields(sessions, settings, cloud) -> None:
    _hook(sessions, "tenant-a", PUBLIC_URL)
    run_id, rt = _saving_run(sessions, settings, cloud)
    steps.poll_images(rt, "tenant-a", [run_id])
    [event] = _events(sessions)
    body = json.loads(event.body)
    assert (event.type, event.state, event.attempts) == ("run.succeeded", "pending", 0)
    assert body["id"] == str(event.id) and body["type"] == "run.succeeded"
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert body["subject"] == f"runs/{run_id}"
    assert body["source"].startswith("/v2/tenant-a/servers/")
    run = body["data"]["run"]
    assert run["id"] == run_id and run["state"] == "done" and run["image_id"]
    assert body["time"] == run["finished_at"]
    # A second poll of the ended run changes nothing, and announces nothing again.
    steps.poll_images(rt, "tenant-a", [run_id])
    assert len(_events(sessions)) == 1


def test_no_event_for_a_tenant_without_a_webhook(sessions, settings, cloud) -> None:
    _hook(sessions, "tenant-b", PUBLIC_URL)
    run_id, rt = _saving_run(sessions, settings, cloud)
    steps.poll_images(rt, "tenant-a", [run_id])
    assert _events(sessions) == []


def test_an_end_that_rolls_back_leaves_no_event(sessions, settings, cloud) -> None:
    _hook(sessions, "tenant-a", PUBLIC_URL)
    run_id, _ = _saving_run(sessions, settings, cloud)
    with pytest.raises(RuntimeError, match="crash"), transaction(sessions) as session:
        run = session.get(Run, run_id)
        end(run, RunState.DONE, NOW, None, None)
        session.flush()
        assert len(session.scalars(sa.select(WebhookEvent)).all()) == 1
        raise RuntimeError("crash before commit")
    assert _events(sessions) == []
    with sessions() as session:
        assert session.get(Run, run_id).state == RunState.SAVING


def test_the_ticks_bulk_ends_each_write_a_failed_event(sessions, settings, cloud) -> None:
    """Skipped, cancelled and timed out: every way the tick ends runs announces them, and a
    tick that rolls back announces nothing."""
    _hook(sessions, "tenant-a", PUBLIC_URL)
    late, _ = _saving_run(sessions, settings, cloud)
    missed, orphan = (_server_with_schedule(sessions, cloud) for _ in range(2))
    with transaction(sessions) as session:
        missed_run = request_run(session, "tenant-a", missed, NOW).id
        orphan_run = request_run(session, "tenant-a", orphan, NOW).id
        session.get(Run, orphan_run).schedule_id = None
    later = NOW + dt.timedelta(days=2)

    def tick_ends(session) -> None:  # type: ignore[no-untyped-def]
        assert tick.cancel_orphaned_runs(session, later) == 1
        assert tick.skip_missed_runs(session, later) == 1
        assert len(tick.time_out_runs(session, later)) == 1

    with pytest.raises(RuntimeError), transaction(sessions) as session:
        tick_ends(session)
        raise RuntimeError("the tick's transaction fails")
    assert _events(sessions) == []
    with transaction(sessions) as session:
        tick_ends(session)
    states = {
        json.loads(e.body)["data"]["run"]["id"]: (
            e.type,
            json.loads(e.body)["data"]["run"]["state"],
        )
        for e in _events(sessions)
    }
    assert states == {
        late: ("run.failed", "timed_out"),
        missed_run: ("run.failed", "skipped"),
        orphan_run: ("run.failed", "cancelled"),
    }


def test_a_final_state_cannot_be_reached_around_the_announcing_paths(
    sessions, settings, cloud
) -> None:
    run_id, _ = _saving_run(sessions, settings, cloud)
    with pytest.raises(IllegalTransition):
        moving(RunState.FAILED, Run.id == run_id)
    with sessions() as session, pytest.raises(IllegalTransition):
        move(session.get(Run, run_id), RunState.DONE)


# -- delivery --------------------------------------------------------------------------------


def _delivery_runtime(settings, sessions, cloud, clock: Clock, **changes) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(settings.replace(webhook_allow_private=True, **changes), sessions, cloud, clock)


def _ended_run_event(sessions, settings, cloud, url: str) -> WebhookEvent:  # type: ignore[no-untyped-def]
    _hook(sessions, "tenant-a", url)
    run_id, rt = _saving_run(sessions, settings, cloud)
    steps.poll_images(rt, "tenant-a", [run_id])
    [event] = _events(sessions)
    return event


def test_an_event_is_delivered_signed_once_and_listed(
    sessions, settings, cloud, receiver, alice
) -> None:
    event = _ended_run_event(sessions, settings, cloud, receiver.url)
    clock = Clock(event.created_at)
    rt = _delivery_runtime(settings, sessions, cloud, clock)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(delivered=1)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered()
    [got] = receiver.events()
    assert got["id"] == str(event.id) and got["type"] == "run.succeeded"
    assert receiver.received[0].body == event.body.encode()
    [listed] = deliveries(alice)
    assert listed["event_id"] == str(event.id) and listed["type"] == "run.succeeded"
    assert (listed["status_code"], listed["error"], listed["attempts"]) == (200, None, 1)
    assert listed["delivered"] is True
    assert _events(sessions)[0].state == "delivered"


def test_a_failed_attempt_is_retried_after_the_back_off_with_the_same_event(
    sessions, settings, cloud, receiver, alice
) -> None:
    event = _ended_run_event(sessions, settings, cloud, receiver.url)
    receiver.answers = [500]
    clock = Clock(event.created_at)
    rt = _delivery_runtime(settings, sessions, cloud, clock, webhook_retry_delay_s=30)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(retrying=1)
    clock.advance(29)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered()
    clock.advance(1)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(delivered=1)
    first, second = receiver.received
    assert first.body == second.body and receiver.events()[0]["id"] == str(event.id)
    listed = deliveries(alice)
    assert [(d["status_code"], d["attempts"]) for d in listed] == [(200, 2), (500, 1)]
    assert len(deliveries(alice, limit=1)) == 1
    assert deliveries(alice, limit=1, marker=listed[0]["id"])[0]["attempts"] == 1


def test_back_off_doubles_to_its_cap_and_the_event_is_given_up_after_24_hours(
    sessions, settings, cloud, receiver
) -> None:
    event = _ended_run_event(sessions, settings, cloud, receiver.url)
    receiver.answers = [503] * 1000
    clock = Clock(event.created_at)
    rt = _delivery_runtime(settings, sessions, cloud, clock)
    times = []
    while True:
        webhooks.deliver_due(rt, budget_s=10)
        times.append(clock.now)
        [stored] = _events(sessions)
        if stored.next_attempt_at is None:
            break
        clock.now = stored.next_attempt_at
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert set(gaps[8:-1]) == {3600}
    assert times[-1] == event.created_at + dt.timedelta(hours=24)
    assert stored.state == "gave_up" and stored.attempts == len(times) == len(receiver.received)
    clock.advance(86400)
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered()
    assert len(receiver.received) == len(times)


def test_a_redirect_is_not_followed(sessions, settings, cloud, receiver, alice) -> None:
    _ended_run_event(sessions, settings, cloud, receiver.url)
    receiver.answers = [302]
    rt = _delivery_runtime(settings, sessions, cloud, Clock(NOW + dt.timedelta(hours=1)))
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(retrying=1)
    assert [r.path for r in receiver.received] == ["/hook"]
    [listed] = deliveries(alice)
    assert (listed["status_code"], listed["delivered"]) == (302, False)


def test_the_address_is_checked_again_at_delivery(
    sessions, settings, cloud, receiver, alice
) -> None:
    """A URL stored while allowed (or a name re-pointed since) reaches nothing refused now."""
    _ended_run_event(sessions, settings, cloud, receiver.url)
    rt = Runtime(settings, sessions, cloud, Clock(NOW + dt.timedelta(hours=1)))
    assert not rt.settings.webhook_allow_private
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(retrying=1)
    assert receiver.received == []
    [listed] = deliveries(alice)
    assert listed["status_code"] is None and "loopback" in listed["error"]


def test_delivery_connects_to_the_checked_address_not_a_new_lookup(
    sessions, settings, cloud, receiver
) -> None:
    """The name is resolved once, checked, and that address is connected to; the receiver sees
    the URL's own host. A name that resolves to a metadata address reaches nothing."""
    _ended_run_event(sessions, settings, cloud, f"http://hooks.example.test:{receiver.port}/hook")
    rt = _delivery_runtime(settings, sessions, cloud, Clock(NOW + dt.timedelta(hours=1)))
    answers = {"hooks.example.test": ["169.254.169.254"]}
    resolver = lambda host, port: answers[host]  # noqa: E731
    assert webhooks.deliver_due(rt, 10, resolver) == webhooks.Delivered(retrying=1)
    assert receiver.received == []
    answers["hooks.example.test"] = ["127.0.0.1"]
    rt.clock.advance(3600)
    assert webhooks.deliver_due(rt, 10, resolver) == webhooks.Delivered(delivered=1)
    assert receiver.received[0].headers["host"] == f"hooks.example.test:{receiver.port}"


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, str]]:
    """A receiver over https with a certificate of its own for hooks.example.test."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", key, "-out", cert, "-subj", "/CN=hooks.example.test"]
        + ["-addext", "subjectAltName=DNS:hooks.example.test"],
        check=True,
        capture_output=True,
    )
    running = WebhookReceiver(SECRET, tls=(cert, key))
    yield running, cert
    running.stop()
    assert running.problems == []


@pytest.mark.parametrize(
    ("host", "trusted", "outcome"),
    [
        ("hooks.example.test", True, "delivered"),
        ("hooks.example.test", False, "certificate verify failed"),
        ("other.example.test", True, "match"),
    ],
)
def test_https_checks_the_certificate_of_the_urls_host_at_the_checked_address(
    sessions, settings, cloud, tls_receiver, monkeypatch, host: str, trusted: bool, outcome: str
) -> None:
    receiver, cert = tls_receiver
    if trusted:
        monkeypatch.setattr(webhooks, "CA_BUNDLE", cert)
    _ended_run_event(sessions, settings, cloud, f"https://{host}:{receiver.port}/hook")
    rt = _delivery_runtime(settings, sessions, cloud, Clock(NOW + dt.timedelta(hours=1)))
    webhooks.deliver_due(rt, 10, lambda host, port: ["127.0.0.1"])
    with sessions() as session:
        attempt = session.scalars(sa.select(WebhookAttempt)).one()
    if outcome == "delivered":
        assert attempt.status_code == 200 and len(receiver.events()) == 1
        assert receiver.received[0].headers["host"] == f"{host}:{receiver.port}"
    else:
        assert attempt.status_code is None and outcome in attempt.error, attempt.error
        assert receiver.received == []


def test_a_killed_workers_claim_comes_back_after_its_lease(
    sessions, settings, cloud, receiver
) -> None:
    event = _ended_run_event(sessions, settings, cloud, receiver.url)
    clock = Clock(event.created_at)
    rt = _delivery_runtime(settings, sessions, cloud, clock)
    with transaction(sessions) as session:
        [claimed] = outbox.claim_due(session, clock(), webhooks.lease_s(rt), limit=10)
    # ...and the worker dies before it posts or settles.
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered()
    clock.now = claimed.lease_until
    assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(delivered=1)
    assert len(receiver.received) == 1 and _events(sessions)[0].attempts == 2


def test_a_receiver_that_does_not_answer_in_time_is_an_attempt_failed(
    sessions, settings, cloud, alice
) -> None:
    slow = WebhookReceiver(SECRET, delay_s=2)
    try:
        _ended_run_event(sessions, settings, cloud, slow.url)
        rt = _delivery_runtime(
            settings, sessions, cloud, Clock(NOW + dt.timedelta(hours=1)), webhook_timeout_s=0.5
        )
        assert webhooks.deliver_due(rt, budget_s=10) == webhooks.Delivered(retrying=1)
    finally:
        slow.stop()
    [listed] = deliveries(alice)
    assert listed["status_code"] is None and "timed out" in listed["error"].lower()


def test_deleting_the_webhook_gives_up_its_waiting_events(sessions, settings, cloud, alice) -> None:
    _ended_run_event(sessions, settings, cloud, PUBLIC_URL)
    assert alice.request("DELETE", hook_url(alice)).status_code == 202
    [event] = _events(sessions)
    assert (event.state, event.next_attempt_at) == ("gave_up", None)


def test_the_secret_is_never_logged(
    sessions, settings, cloud, receiver, private_api, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    assert put_hook(private_api, receiver.url).status_code == 200
    assert put_hook(private_api, "http://169.254.169.254/").status_code == 400
    assert private_api.request("GET", hook_url(private_api)).status_code == 200
    with sessions() as session:
        assert SECRET not in repr(session.get(Webhook, "tenant-a"))
    run_id, rt = _saving_run(sessions, settings, cloud)
    steps.poll_images(rt, "tenant-a", [run_id])
    receiver.answers = [500]
    clock = Clock(NOW + dt.timedelta(hours=1))
    webhooks.deliver_due(_delivery_runtime(settings, sessions, cloud, clock), budget_s=10)
    out, err = capfd.readouterr()
    assert caplog.records and SECRET not in caplog.text
    assert SECRET not in out + err


def test_a_failed_statement_does_not_carry_the_secret_into_its_error(sessions) -> None:
    """Errors are logged with their tracebacks: the values bound into a statement stay out."""
    _hook(sessions, "tenant-a", PUBLIC_URL)
    with pytest.raises(sa.exc.IntegrityError) as failed, transaction(sessions) as session:
        session.execute(
            sa.insert(Webhook).values(
                tenant_id="tenant-a", url=PUBLIC_URL, secret=SECRET, created_at=NOW, updated_at=NOW
            )
        )
    assert "webhooks" in str(failed.value) and SECRET not in str(failed.value)


def test_old_finished_events_are_trimmed_with_their_attempts(
    sessions, settings, cloud, receiver
) -> None:
    event = _ended_run_event(sessions, settings, cloud, receiver.url)
    rt = _delivery_runtime(settings, sessions, cloud, Clock(event.created_at))
    webhooks.deliver_due(rt, budget_s=10)
    keep_days = settings.run_history_days
    for days, left in ((keep_days - 1, 1), (keep_days + 1, 0)):
        with transaction(sessions) as session:
            outbox.trim_finished(session, event.created_at + dt.timedelta(days=days), keep_days)
        with sessions() as session:
            assert len(session.scalars(sa.select(WebhookEvent)).all()) == left
            assert len(session.scalars(sa.select(WebhookAttempt)).all()) == left
