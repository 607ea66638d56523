"""Staleness and pause/resume (API.md, extension) over a real socket against PostgreSQL, on an
injected clock that the API, the simulated cloud, the tick and the image steps share: a
schedule is stale once a period plus 12 hours pass without a success, fresh after a done run,
never while paused; a paused schedule gets no scheduled run but run-now still works; resume
and a compatible POST plan the next run again."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from common import schedules
from common.compute.simulated import SimulatedDriver
from common.db import transaction
from common.models import Run, Schedule, Webhook, WebhookEvent
from common.runs import Reason, RunState
from common.slots import next_run_at
from scheduler import tick
from scheduler.admission import admit_waiting_runs
from tests.conftest import Client, ServedApp
from workers.runtime import Runtime
from workers.steps import create_image, poll_images

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # a Wednesday
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class Clock:
    """The service's time, moved only by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def sim(sessions, settings, clock) -> SimulatedDriver:  # type: ignore[no-untyped-def]
    return SimulatedDriver(sessions, seconds_per_gb=settings.sim_seconds_per_gb, clock=clock)


@pytest.fixture
def served(settings, sessions, tokens, sim, clock) -> Iterator[ServedApp]:  # type: ignore[no-untyped-def]
    from api import create_app

    app = ServedApp(create_app(settings, sessions=sessions, compute=sim, clock=clock))
    yield app
    app.stop()


@pytest.fixture
def alice(served) -> Client:  # type: ignore[no-untyped-def]
    return Client(served.base, "alice", "tenant-a")


@pytest.fixture
def server(sim) -> str:  # type: ignore[no-untyped-def]
    return sim.add_servers("tenant-a", 1, disk_gb=1)[0]


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule(client: Client, server: str) -> dict:
    answer = client.get_schedule(server)
    assert answer.status_code == 200, answer.text
    return answer.json()["image_schedule"]


def pause(client: Client, server: str, action: str = "pause") -> dict:
    answer = client.request("POST", client.schedule_url(server) + "/" + action)
    assert answer.status_code == 200, answer.text
    return answer.json()["image_schedule"]


def listed(client: Client, query: str = "") -> list[dict]:
    """Every page of the tenant's list, following the next links."""
    url = client.url(f"/v2/{client.tenant}/rax-si-image-schedules{query}")
    items: list[dict] = []
    while url:
        answer = client.request("GET", url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["image_schedules"]
        url = next((link["href"] for link in body.get("image_schedules_links", [])), None)
    return items


def stale_servers(client: Client) -> set[str]:
    return {item["server_id"] for item in listed(client, "?stale=true")}


def scheduled_runs(sessions, server: str) -> list[Run]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return list(session.scalars(sa.select(Run).where(Run.server_id == server).order_by(Run.id)))


def tick_at(sessions, at: dt.datetime) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        return tick.materialize_due_runs(session, at)


def run_to_done(sessions, settings, sim, clock, run_id: int) -> dt.datetime:  # type: ignore[no-untyped-def]
    """Admit, create and poll the run on the shared clock until its image is ACTIVE."""
    with transaction(sessions) as session:
        admitted = admit_waiting_runs(
            session, cap=10, now=clock.now, lease_s=30, run_timeout_s=settings.run_timeout_s
        )
    assert admitted == [run_id]
    create_image(Runtime(settings, sessions, sim, clock=clock), run_id)
    clock.now += dt.timedelta(seconds=5)  # a 1 GB simulated image is ACTIVE by then
    poll_images(Runtime(settings, sessions, sim, clock=clock), "tenant-a", [run_id])
    run = _run(sessions, run_id)
    assert run.state == RunState.DONE, (run.state, run.error)
    return clock.now


def _run(sessions, run_id: int) -> Run:  # type: ignore[no-untyped-def]
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


# -- staleness -------------------------------------------------------------------------------


def test_a_daily_schedule_is_stale_once_a_period_passes_with_no_success(
    alice, server, clock
) -> None:
    posted = alice.post_schedule(server, {"image_schedule": {"retention": 2}}).json()
    assert posted["image_schedule"]["stale"] is False
    assert posted["image_schedule"]["last_success_at"] is None

    clock.now = T0 + DAY - SECOND  # not yet older than one period
    assert schedule(alice, server)["stale"] is False
    assert stale_servers(alice) == set()

    clock.now = T0 + DAY + SECOND  # older than a day and no image ever ACTIVE
    assert schedule(alice, server)["stale"] is True
    assert stale_servers(alice) == {server}
    assert [i["server_id"] for i in listed(alice, "?stale=false")] == []


def test_a_done_run_keeps_it_fresh_for_a_period_plus_12_hours(
    alice, server, clock, sessions, settings, sim
) -> None:
    alice.post_schedule(server, {"image_schedule": {"retention": 2}})
    clock.now = T0 + HOUR
    made = alice.request("POST", alice.schedule_url(server) + "/runs").json()["run"]
    succeeded = run_to_done(sessions, settings, sim, clock, made["id"])

    clock.now = T0 + DAY + HOUR  # older than a period, but an image is fresh
    body = schedule(alice, server)
    assert body["last_success_at"] == iso(succeeded)
    assert body["stale"] is False
    assert stale_servers(alice) == set()

    clock.now = succeeded + DAY + 12 * HOUR  # exactly 36 h: still within
    assert schedule(alice, server)["stale"] is False
    clock.now = succeeded + DAY + 12 * HOUR + SECOND
    assert schedule(alice, server)["stale"] is True
    assert stale_servers(alice) == {server}


def test_a_weekly_schedule_has_a_week_plus_12_hours(alice, server, clock, sessions) -> None:
    alice.post_schedule(server, {"image_schedule": {"retention": 2, "day_of_week": "friday"}})
    success = T0 + 2 * HOUR
    with transaction(sessions) as session:
        session.execute(sa.update(Schedule).values(last_success_at=success))
    clock.now = T0 + 3 * DAY  # a daily schedule would be stale by now
    assert schedule(alice, server)["stale"] is False
    clock.now = success + dt.timedelta(days=7, hours=12)
    assert schedule(alice, server)["stale"] is False
    assert stale_servers(alice) == set()
    clock.now += SECOND
    assert schedule(alice, server)["stale"] is True
    assert stale_servers(alice) == {server}


def test_a_paused_schedule_is_never_stale(alice, server, clock) -> None:
    alice.post_schedule(server, {"image_schedule": {"retention": 2}})
    clock.now = T0 + 3 * DAY
    assert schedule(alice, server)["stale"] is True

    paused = pause(alice, server)
    assert paused["paused"] is True and paused["stale"] is False
    assert paused["next_run_at"] is None
    assert schedule(alice, server) == paused
    assert stale_servers(alice) == set()
    [item] = listed(alice)
    assert item["paused"] is True and item["stale"] is False and item["next_run_at"] is None

    resumed = pause(alice, server, "resume")
    assert resumed["paused"] is False
    assert resumed["stale"] is True  # still no image within 36 hours: API.md's rule
    assert stale_servers(alice) == {server}


def test_the_stale_filter_lists_what_the_flag_says_page_by_page(alice, sim, clock) -> None:
    servers = sorted(sim.add_servers("tenant-a", 5, disk_gb=1))
    for index, server in enumerate(servers):
        clock.now = T0 + index * 10 * HOUR  # created 0, 10, 20, 30, 40 h after T0
        alice.post_schedule(server, {"image_schedule": {"retention": 1}})
    clock.now = T0 + 40 * HOUR + DAY - SECOND
    pause(alice, servers[1])
    everything = listed(alice, "?limit=2")
    flagged = {item["server_id"] for item in everything if item["stale"]}
    assert flagged == {servers[0], servers[2], servers[3]}
    assert {i["server_id"] for i in listed(alice, "?stale=true&limit=1")} == flagged
    assert {i["server_id"] for i in listed(alice, "?stale=false&limit=1")} == (
        set(servers) - flagged
    )


# -- pause and resume --------------------------------------------------------------------------


def test_pause_stops_scheduled_runs_and_run_now_still_runs(alice, server, clock, sessions) -> None:
    planned = alice.post_schedule(server, {"image_schedule": {"retention": 2}}).json()
    due = dt.datetime.strptime(
        planned["image_schedule"]["next_run_at"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=dt.UTC)
    assert tick_at(sessions, due) == 1  # a scheduled run waits
    clock.now = due + SECOND
    pause(alice, server)
    [cancelled] = scheduled_runs(sessions, server)
    assert cancelled.state == RunState.CANCELLED and cancelled.reason == Reason.SCHEDULE_PAUSED

    for days in (1, 2, 3):  # its slot comes round, and nothing is made
        assert tick_at(sessions, due + days * DAY) == 0
    assert len(scheduled_runs(sessions, server)) == 1

    clock.now = due + 3 * DAY
    made = alice.request("POST", alice.schedule_url(server) + "/runs")
    assert made.status_code == 202, made.text
    assert made.json()["run"]["trigger"] == "manual"
    assert made.json()["run"]["state"] == "pending"

    resumed = pause(alice, server, "resume")
    # Planned again from the slot, after now: the days missed are not made up.
    assert resumed["next_run_at"] == iso(next_run_at(None, _slot(sessions), clock.now))
    assert resumed["next_run_at"] > iso(clock.now)
    assert tick_at(sessions, clock.now) == 0
    next_due = dt.datetime.strptime(resumed["next_run_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.UTC
    )
    assert tick_at(sessions, next_due) == 1
    triggers = [r.trigger for r in scheduled_runs(sessions, server)]
    assert triggers == ["schedule", "manual", "schedule"]


def _slot(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalar(sa.select(Schedule.slot_s))


def test_pausing_twice_or_resuming_a_running_schedule_changes_nothing(
    alice, server, clock, sessions
) -> None:
    running = alice.post_schedule(server, {"image_schedule": {"retention": 2}}).json()
    assert pause(alice, server, "resume") == running["image_schedule"]
    pause(alice, server)
    clock.now = T0 + HOUR
    again = pause(alice, server)
    assert again["paused"] is True
    with sessions() as session:
        assert session.scalar(sa.select(Schedule.paused_at)) == T0  # the first pause's time


def test_a_compatible_post_resumes_a_paused_schedule(alice, server, clock, sessions) -> None:
    alice.post_schedule(server, {"image_schedule": {"retention": 2}})
    pause(alice, server)
    clock.now = T0 + 2 * DAY
    answer = alice.post_schedule(server, {"image_schedule": {"retention": 3}})
    assert answer.status_code == 200, answer.text
    body = answer.json()["image_schedule"]
    assert body["paused"] is False and body["retention"] == 3
    assert body["next_run_at"] is not None and body["next_run_at"] > iso(clock.now)
    assert schedule(alice, server) == body
    due = dt.datetime.strptime(body["next_run_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert tick_at(sessions, due) == 1


# -- bad input and tenancy ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_and_resume_answer_clear_errors(alice, server, sim, action) -> None:
    url = alice.schedule_url(server) + "/" + action
    missing = alice.request("POST", url)
    assert missing.status_code == 404
    assert missing.json() == {
        "itemNotFound": {
            "message": f"Image schedule does not exist for server {server}",
            "code": 404,
        }
    }
    unknown = alice.request("POST", alice.schedule_url("not-a-server") + "/" + action)
    assert unknown.status_code == 404
    assert "Specified instance not-a-server" in unknown.json()["itemNotFound"]["message"]

    alice.post_schedule(server, {"image_schedule": {"retention": 2}})
    read_only = alice.as_token("olive").request("POST", url)
    assert read_only.status_code == 403 and "forbidden" in read_only.json()
    assert alice.as_token(None).request("POST", url).status_code == 401
    wrong_method = alice.request("GET", url)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["badMethod"]["code"] == 405
    assert schedule(alice, server)["paused"] is False  # nothing above changed it


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_stale_filter_that_is_no_boolean_is_400(alice, value) -> None:
    answer = alice.request("GET", alice.url(f"/v2/tenant-a/rax-si-image-schedules?stale={value}"))
    assert answer.status_code == 400
    assert "stale" in answer.json()["badRequest"]["message"]


def test_another_tenants_pause_is_404_and_changes_nothing(alice, server, served) -> None:
    alice.post_schedule(server, {"image_schedule": {"retention": 2}})
    bob = Client(served.base, "bob", "tenant-b")
    for action in ("pause", "resume"):
        answer = bob.request("POST", bob.schedule_url(server) + "/" + action)
        assert answer.status_code == 404
        assert answer.json()["itemNotFound"]["message"] == (
            f"Specified instance {server} could not be found."
        )
        on_alices_path = bob.request(
            "POST", bob.schedule_url(server, tenant="tenant-a") + "/" + action
        )
        assert on_alices_path.status_code == 403
    assert schedule(alice, server)["paused"] is False
    pause(alice, server)
    resume = bob.request("POST", bob.schedule_url(server) + "/resume")
    assert resume.status_code == 404
    assert schedule(alice, server)["paused"] is True


def test_the_openapi_document_describes_the_new_fields_and_resources(served) -> None:
    document = (
        Client(served.base, None, "tenant-a").request("GET", served.base + "/openapi.json").json()
    )
    schedule_path = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule"
    for action in ("pause", "resume"):
        post = document["paths"][f"{schedule_path}/{action}"]["post"]
        assert post["summary"] and "200" in post["responses"] and "404" in post["responses"]
    fields = document["components"]["schemas"]["ImageScheduleOut"]["properties"]
    for name in ("paused", "last_success_at", "stale", "next_run_at"):
        assert fields[name]["description"], name
    assert fields["next_run_at"]["nullable"] is True
    assert fields["last_success_at"]["nullable"] is True
    listing = document["paths"]["/v2/{tenant_id}/rax-si-image-schedules"]["get"]
    [stale] = [p for p in listing["parameters"] if p["name"] == "stale"]
    assert stale["in"] == "query" and stale["schema"]["type"] == "boolean"
    assert stale["description"]


def _stale_events(sessions) -> list[dict]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        bodies = session.scalars(
            sa.select(WebhookEvent.body)
            .where(WebhookEvent.type == "schedule.stale")
            .order_by(WebhookEvent.created_at)
        )
        return [json.loads(body) for body in bodies]


def _announce(sessions, at: dt.datetime) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        return schedules.announce_stale(session, at)


def test_a_schedule_going_stale_is_announced_once_a_spell(
    alice, server, clock, sessions, settings, sim
) -> None:
    with transaction(sessions) as session:
        session.add(
            Webhook(
                tenant_id="tenant-a",
                url="https://hooks.example.com/si",
                secret="s" * 16,
                created_at=T0,
                updated_at=T0,
            )
        )
    [unhooked] = sim.add_servers("tenant-b", 1, disk_gb=1)
    alice.as_token("bob", "tenant-b").post_schedule(unhooked, {"image_schedule": {"retention": 1}})
    alice.post_schedule(server, {"image_schedule": {"retention": 2}})

    assert _announce(sessions, T0 + DAY - SECOND) == 0
    assert _announce(sessions, T0 + DAY + SECOND) == 2  # both went stale; one has a webhook
    assert _announce(sessions, T0 + DAY + HOUR) == 0  # told once
    [event] = _stale_events(sessions)
    assert event["type"] == "schedule.stale" and event["specversion"] == "1.0"
    assert event["data"]["server_id"] == server and event["data"]["last_success_at"] is None

    # A success ends the spell; the next one is announced again.
    clock.now = T0 + DAY + 2 * HOUR
    made = alice.request("POST", alice.schedule_url(server) + "/runs").json()["run"]
    succeeded = run_to_done(sessions, settings, sim, clock, made["id"])
    assert _announce(sessions, succeeded + DAY + 12 * HOUR) == 0
    assert _announce(sessions, succeeded + DAY + 12 * HOUR + SECOND) == 1
    assert len(_stale_events(sessions)) == 2
    assert _stale_events(sessions)[1]["data"]["last_success_at"] == iso(succeeded)
