"""The compatible tenant API over a real socket, against PostgreSQL: API.md, call by call."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from tests.conftest import Client, ServedApp


@pytest.fixture
def server_a(cloud) -> str:  # type: ignore[no-untyped-def]
    return cloud.add_servers("tenant-a", 1)[0]


@pytest.fixture
def server_b(cloud) -> str:  # type: ignore[no-untyped-def]
    return cloud.add_servers("tenant-b", 1)[0]


def _next_run(body: dict) -> dt.datetime:
    text = body["image_schedule"]["next_run_at"]
    assert text.endswith("Z")
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def test_daily_schedule_round_trip(alice, server_a) -> None:
    answer = alice.post_schedule(server_a, {"image_schedule": {"retention": 7}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The compatible fields, and the extensions API.md adds (clients ignore unknown fields).
    assert set(body["image_schedule"]) == {
        "retention",
        "next_run_at",
        "paused",
        "last_success_at",
        "stale",
    }
    assert body["image_schedule"]["retention"] == 7
    assert body["image_schedule"]["paused"] is False
    assert body["image_schedule"]["last_success_at"] is None
    assert body["image_schedule"]["stale"] is False
    now = dt.datetime.now(dt.UTC)
    assert now < _next_run(body) <= now + dt.timedelta(days=1)

    again = alice.get_schedule(server_a)
    assert again.status_code == 200
    assert again.json() == body


def test_weekly_schedule_any_case_answered_upper(alice, server_a) -> None:
    answer = alice.post_schedule(
        server_a, {"image_schedule": {"retention": 5, "day_of_week": "saturday"}}
    )
    assert answer.status_code == 200, answer.text
    schedule = answer.json()["image_schedule"]
    assert schedule["day_of_week"] == "SATURDAY"
    assert schedule["retention"] == 5
    run = _next_run(answer.json())
    # The planned start lies in Saturday's window: Friday 12:00 to Sunday 12:00 UTC.
    window_day = (run - dt.timedelta(hours=12)).weekday()
    assert window_day in (4, 5), run
    assert alice.get_schedule(server_a).json() == answer.json()


def test_repost_switches_daily_weekly_and_back(alice, server_a) -> None:
    daily = alice.post_schedule(server_a, {"image_schedule": {"retention": 2}}).json()
    weekly = alice.post_schedule(
        server_a, {"image_schedule": {"retention": 3, "day_of_week": "Monday"}}
    ).json()
    assert weekly["image_schedule"]["day_of_week"] == "MONDAY"
    assert weekly["image_schedule"]["retention"] == 3
    back = alice.post_schedule(
        server_a, {"image_schedule": {"retention": 4, "day_of_week": None}}
    ).json()
    assert "day_of_week" not in back["image_schedule"]
    assert back["image_schedule"]["retention"] == 4
    assert alice.get_schedule(server_a).json() == back
    assert daily["image_schedule"]["retention"] == 2


def test_delete_then_404(alice, server_a, cloud) -> None:
    alice.post_schedule(server_a, {"image_schedule": {"retention": 1}})
    image = cloud.create_manual_image(server_a)
    answer = alice.delete_schedule(server_a)
    assert answer.status_code == 202
    assert answer.content == b""
    missing = alice.get_schedule(server_a)
    assert missing.status_code == 404
    assert missing.json() == {
        "itemNotFound": {
            "message": f"Image schedule does not exist for server {server_a}",
            "code": 404,
        }
    }
    again = alice.delete_schedule(server_a)
    assert again.status_code == 404
    assert again.json() == missing.json()
    # Images already made stay.
    assert [i.id for i in cloud.list_server_images("tenant-a", server_a)] == [image]


def test_unknown_server_is_404(alice) -> None:
    expected = {
        "itemNotFound": {"message": "Specified instance nope could not be found.", "code": 404}
    }
    for answer in (
        alice.post_schedule("nope", {"image_schedule": {"retention": 1}}),
        alice.get_schedule("nope"),
        alice.delete_schedule("nope"),
    ):
        assert answer.status_code == 404
        assert answer.json() == expected


@pytest.mark.parametrize(
    "server_id", ["%2e%2e", "x%3Fall_tenants=1", "a,b", "not-a-uuid", "1" * 36]
)
def test_a_server_id_that_is_no_uuid_never_reaches_the_cloud(alice, server_id, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from common.compute.simulated import SimulatedDriver

    asked = []
    monkeypatch.setattr(SimulatedDriver, "get_server", lambda *args: asked.append(args))
    for answer in (
        alice.post_schedule(server_id, {"image_schedule": {"retention": 1}}),
        alice.get_schedule(server_id),
        alice.request("GET", alice.schedule_url(server_id) + "/runs"),
    ):
        assert answer.status_code == 404
        assert answer.json()["itemNotFound"]["message"].startswith("Specified instance ")
    assert asked == []


def test_other_tenants_server_looks_like_no_server(alice, server_b, api_server) -> None:
    bob = alice.as_token("bob", "tenant-b")
    assert bob.post_schedule(server_b, {"image_schedule": {"retention": 1}}).status_code == 200
    unknown = alice.post_schedule("does-not-exist", {"image_schedule": {"retention": 1}})
    for answer in (
        alice.post_schedule(server_b, {"image_schedule": {"retention": 1}}),
        alice.get_schedule(server_b),
        alice.delete_schedule(server_b),
    ):
        assert answer.status_code == 404
        message = answer.json()["itemNotFound"]["message"]
        assert message == unknown.json()["itemNotFound"]["message"].replace(
            "does-not-exist", server_b
        )
    # Bob's schedule is untouched.
    assert bob.get_schedule(server_b).json()["image_schedule"]["retention"] == 1


def test_other_tenants_path_is_403(alice, server_b) -> None:
    answer = alice.request("GET", alice.schedule_url(server_b, tenant="tenant-b"))
    assert answer.status_code == 403
    assert answer.json()["forbidden"]["code"] == 403
    answer = alice.request(
        "POST",
        alice.schedule_url(server_b, tenant="tenant-b"),
        json={"image_schedule": {"retention": 1}},
    )
    assert answer.status_code == 403


def test_observer_reads_but_cannot_write(alice, server_a) -> None:
    olive = alice.as_token("olive")
    assert alice.post_schedule(server_a, {"image_schedule": {"retention": 3}}).status_code == 200
    assert olive.get_schedule(server_a).status_code == 200
    for answer in (
        olive.post_schedule(server_a, {"image_schedule": {"retention": 9}}),
        olive.delete_schedule(server_a),
    ):
        assert answer.status_code == 403
        assert set(answer.json()) == {"forbidden"}
    assert alice.get_schedule(server_a).json()["image_schedule"]["retention"] == 3


def test_admin_acts_on_any_tenant(alice, server_a) -> None:
    root = alice.as_token("root")
    answer = root.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    assert answer.status_code == 200
    assert alice.get_schedule(server_a).json()["image_schedule"]["retention"] == 2


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_missing_or_unknown_token_is_401(alice, server_a, token) -> None:
    client = alice.as_token(None)
    headers = {} if token is None else {"X-Auth-Token": token}
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(
            method,
            client.schedule_url(server_a),
            headers=headers,
            json={"image_schedule": {"retention": 1}},
        )
        assert answer.status_code == 401
        assert answer.json()["unauthorized"]["code"] == 401


BAD_BODIES = [
    ({"image_schedule": {"retention": "7"}}, "retention"),
    ({"image_schedule": {"retention": 7.0}}, "retention"),
    ({"image_schedule": {"retention": 7.5}}, "retention"),
    ({"image_schedule": {"retention": True}}, "retention"),
    ({"image_schedule": {"retention": None}}, "retention"),
    ({"image_schedule": {"retention": 0}}, "retention"),
    ({"image_schedule": {"retention": -1}}, "retention"),
    ({"image_schedule": {"retention": 65536}}, "retention"),
    ({"image_schedule": {"retention": 10**30}}, "retention"),
    ({"image_schedule": {}}, "retention"),
    ({"image_schedule": {"retention": 1, "colour": "red"}}, "colour"),
    ({"image_schedule": {"retention": 1, "day_of_week": "FUNDAY"}}, "day_of_week"),
    ({"image_schedule": {"retention": 1, "day_of_week": 3}}, "day_of_week"),
    ({"image_schedule": {"retention": 1, "day_of_week": ""}}, "day_of_week"),
    ({"image_schedule": None}, "image_schedule"),
    ({"image_schedule": [1]}, "image_schedule"),
    ({"image_schedule": "daily"}, "image_schedule"),
    ({}, "image_schedule"),
    ({"retention": 7}, "image_schedule"),
    ([{"image_schedule": {"retention": 7}}], "body"),
    ("image_schedule", "body"),
    (7, "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_body_is_400_naming_the_field_and_changes_nothing(alice, server_a, body, field) -> None:
    before = alice.post_schedule(
        server_a, {"image_schedule": {"retention": 4, "day_of_week": "TUESDAY"}}
    )
    answer = alice.post_schedule(server_a, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["badRequest"]
    assert error["code"] == 400
    assert field in error["message"], error["message"]
    assert alice.get_schedule(server_a).json() == before.json()


def test_invalid_json_is_400(alice, server_a) -> None:
    answer = alice.request(
        "POST",
        alice.schedule_url(server_a),
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert "JSON" in answer.json()["badRequest"]["message"]
    assert alice.get_schedule(server_a).status_code == 404


def test_wrong_content_type_is_415(alice, server_a) -> None:
    answer = alice.request(
        "POST",
        alice.schedule_url(server_a),
        data='{"image_schedule": {"retention": 1}}',
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 415
    assert answer.json()["badMediaType"]["code"] == 415
    assert alice.get_schedule(server_a).status_code == 404


def test_body_over_64k_is_413(alice, server_a) -> None:
    body = '{"image_schedule": {"retention": 1, "pad": "' + "x" * 70_000 + '"}}'
    answer = alice.request(
        "POST",
        alice.schedule_url(server_a),
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["overLimit"]["code"] == 413
    assert alice.get_schedule(server_a).status_code == 404


def test_extra_top_level_keys_are_ignored(alice, server_a) -> None:
    answer = alice.post_schedule(server_a, {"image_schedule": {"retention": 2}, "x": 1})
    assert answer.status_code == 200


def test_method_not_allowed_has_error_body(alice, server_a) -> None:
    answer = alice.request("PUT", alice.schedule_url(server_a), json={})
    assert answer.status_code == 405
    assert answer.json()["badMethod"]["code"] == 405


def test_list_paginates_own_schedules_only(alice, cloud) -> None:
    mine = sorted(cloud.add_servers("tenant-a", 5))
    theirs = cloud.add_servers("tenant-b", 2)
    bob = alice.as_token("bob", "tenant-b")
    for server in mine:
        assert alice.post_schedule(server, {"image_schedule": {"retention": 1}}).ok
    for server in theirs:
        assert bob.post_schedule(server, {"image_schedule": {"retention": 1}}).ok
    seen: list[str] = []
    url = alice.url("/v2/tenant-a/rax-si-image-schedules?limit=2")
    pages = 0
    while url:
        answer = alice.request("GET", url)
        assert answer.status_code == 200
        body = answer.json()
        seen += [item["server_id"] for item in body["image_schedules"]]
        assert all("next_run_at" in item for item in body["image_schedules"])
        links = body.get("image_schedules_links", [])
        url = links[0]["href"] if links else None
        pages += 1
    assert seen == mine
    assert pages == 3
    bad = alice.request("GET", alice.url("/v2/tenant-a/rax-si-image-schedules?limit=0"))
    assert bad.status_code == 400
    assert "limit" in bad.json()["badRequest"]["message"]


def test_health_and_ready_need_no_token(api_server) -> None:
    assert requests.get(f"{api_server.base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api_server.base}/readyz", timeout=5)
    assert ready.status_code == 200
    metrics = requests.get(f"{api_server.base}/metrics", timeout=5)
    assert "si_api_requests_total" in metrics.text


def test_openapi_document_served(api_server) -> None:
    spec = requests.get(f"{api_server.base}/openapi.json", timeout=5).json()
    assert "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule" in spec["paths"]
    assert requests.get(f"{api_server.base}/docs", timeout=5).status_code == 200


def test_schedule_survives_api_restart(settings, sessions, tokens, cloud) -> None:
    from api import create_app
    from common.db import make_engine, make_session_factory

    server = cloud.add_servers("tenant-a", 1)[0]
    first = ServedApp(create_app(settings, sessions=sessions))
    try:
        stored = (
            Client(first.base, "alice", "tenant-a")
            .post_schedule(server, {"image_schedule": {"retention": 6}})
            .json()
        )
    finally:
        first.stop()
    # A new app with its own engine: nothing carried over in memory.
    engine = make_engine(settings.database_url)
    second = ServedApp(create_app(settings, sessions=make_session_factory(engine)))
    try:
        assert Client(second.base, "alice", "tenant-a").get_schedule(server).json() == stored
    finally:
        second.stop()
        engine.dispose()


def test_identity_service_down_is_503_not_401(settings, sessions, server_a) -> None:
    from api import create_app
    from api.auth import AuthBackendUnavailable

    class DownKeystone:
        def authenticate(self, token: str):  # type: ignore[no-untyped-def]
            raise AuthBackendUnavailable("keystone unreachable")

        def known(self, token: str) -> None:
            return None

    served = ServedApp(create_app(settings, sessions=sessions, auth=DownKeystone()))
    try:
        answer = Client(served.base, "alice", "tenant-a").get_schedule(server_a)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
        assert answer.json()["serviceUnavailable"]["code"] == 503
    finally:
        served.stop()


def test_racing_posts_leave_one_schedule_per_server(alice, server_a, sessions) -> None:
    import threading

    import sqlalchemy as sa

    from common.models import Schedule

    barrier = threading.Barrier(8)
    answers: list[int] = []

    def post(retention: int) -> None:
        barrier.wait()
        answers.append(
            alice.post_schedule(server_a, {"image_schedule": {"retention": retention}}).status_code
        )

    threads = [threading.Thread(target=post, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    with sessions() as session:
        rows = session.scalars(sa.select(Schedule).where(Schedule.server_id == server_a)).all()
    assert len(rows) == 1
    assert alice.get_schedule(server_a).json()["image_schedule"]["retention"] == rows[0].retention


def test_a_server_id_stored_under_another_tenant_is_never_taken_over(
    alice, server_a, sessions
) -> None:  # type: ignore[no-untyped-def]
    """Should the cloud ever answer that a server is this tenant's while the service keeps it
    under another tenant, the POST is the same 404 as a foreign server's, and the row stays."""
    from common import schedules
    from common.clock import utcnow
    from common.db import transaction

    with transaction(sessions) as session:
        schedules.upsert(
            session,
            tenant_id="tenant-b",
            server_id=server_a,
            server_name="theirs",
            retention=3,
            day_of_week=None,
            slot_s=600,
            default_duration_s=600.0,
            now=utcnow(),
        )
    answer = alice.post_schedule(server_a, {"image_schedule": {"retention": 9}})
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "itemNotFound": {
            "message": f"Specified instance {server_a} could not be found.",
            "code": 404,
        }
    }
    with sessions() as session:
        row = schedules.find(session, "tenant-b", server_a)
    assert row is not None and (row.retention, row.server_name) == (3, "theirs")


def test_a_post_after_the_database_dropped_every_connection_is_stored(
    alice, server_a, engine
) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    assert alice.post_schedule(server_a, {"image_schedule": {"retention": 2}}).status_code == 200
    with engine.connect() as other:
        other.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    weekly = {"image_schedule": {"retention": 4, "day_of_week": "monday"}}
    answer = alice.post_schedule(server_a, weekly)
    assert answer.status_code == 200, answer.text
    assert alice.get_schedule(server_a).json() == answer.json()
    assert answer.json()["image_schedule"]["day_of_week"] == "MONDAY"
