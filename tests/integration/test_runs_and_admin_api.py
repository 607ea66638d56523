"""The runs extension and the operator API over a real socket."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from common.db import transaction
from common.models import Run


@pytest.fixture
def server_a(cloud) -> str:  # type: ignore[no-untyped-def]
    return cloud.add_servers("tenant-a", 1)[0]


def runs_url(client, server: str) -> str:  # type: ignore[no-untyped-def]
    return client.schedule_url(server) + "/runs"


def test_run_now_needs_a_schedule(alice, server_a) -> None:
    answer = alice.request("POST", runs_url(alice, server_a))
    assert answer.status_code == 404
    assert answer.json()["itemNotFound"]["message"] == (
        f"Image schedule does not exist for server {server_a}"
    )
    unknown = alice.request("POST", runs_url(alice, "nope"))
    assert unknown.status_code == 404
    assert "Specified instance nope" in unknown.json()["itemNotFound"]["message"]


def test_run_now_is_queued_once_and_listed(alice, server_a, sessions) -> None:
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    first = alice.request("POST", runs_url(alice, server_a))
    assert first.status_code == 202, first.text
    run = first.json()["run"]
    assert run["state"] == "pending"
    assert run["trigger"] == "manual"
    assert run["attempts"] == 0
    assert run["image_id"] is None
    # Asking again while it waits answers the same run, not a second image.
    again = alice.request("POST", runs_url(alice, server_a))
    assert again.json()["run"]["id"] == run["id"]

    listed = alice.request("GET", runs_url(alice, server_a))
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["runs"]] == [run["id"]]
    assert set(listed.json()["runs"][0]) == {
        "id",
        "trigger",
        "scheduled_for",
        "started_at",
        "finished_at",
        "state",
        "image_id",
        "attempts",
        "error",
        "position",
        "estimated_start_at",
    }


def test_a_waiting_run_says_where_it_stands_in_the_fair_share_queue(alice, cloud) -> None:  # type: ignore[no-untyped-def]
    root = alice.as_token("root", "operators")
    assert root.request("PUT", root.url("/admin/v1/cap"), json={"inflight_cap": 1}).ok
    bob = alice.as_token("bob", "tenant-b")
    mine = cloud.add_servers("tenant-a", 3)
    [theirs] = cloud.add_servers("tenant-b", 1)
    for client, server in [(alice, s) for s in mine] + [(bob, theirs)]:
        client.post_schedule(server, {"image_schedule": {"retention": 1}})
        assert client.request("POST", runs_url(client, server)).status_code == 202

    def place(client, server):  # type: ignore[no-untyped-def]
        [run] = client.request("GET", runs_url(client, server)).json()["runs"]
        return run["position"], dt.datetime.fromisoformat(run["estimated_start_at"])

    first, second, third = (place(alice, server) for server in mine)
    other = place(bob, theirs)
    # Max-min fair share: bob's only run goes before alice's second; each image is expected
    # to take the default 900 s, one at a time under a cap of 1.
    assert [first[0], other[0], second[0], third[0]] == [0, 1, 2, 3]
    starts = [first[1], other[1], second[1], third[1]]
    # Each estimate is counted from its own request's "now", in whole seconds: requests made
    # across a second's turn differ by one.
    offsets = [(start - starts[0]).total_seconds() for start in starts]
    assert all(
        0 <= got - want <= 1 for got, want in zip(offsets, [0, 900, 1800, 2700], strict=True)
    )


def test_parallel_run_nows_make_one_run(alice, server_a, sessions) -> None:  # type: ignore[no-untyped-def]
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    barrier = threading.Barrier(16)

    def ask() -> requests.Response:
        barrier.wait(5)
        return alice.request("POST", runs_url(alice, server_a))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: ask(), range(16)))

    assert [a.status_code for a in answers] == [202] * 16
    assert len({a.json()["run"]["id"] for a in answers}) == 1
    with sessions() as session:
        made = session.scalar(
            sa.select(sa.func.count()).select_from(Run).where(Run.server_id == server_a)
        )
    assert made == 1


def test_the_database_refuses_a_second_open_run_now(alice, server_a, sessions) -> None:  # type: ignore[no-untyped-def]
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    first = alice.request("POST", runs_url(alice, server_a)).json()["run"]
    with sessions() as session, pytest.raises(sa.exc.IntegrityError):
        session.execute(
            sa.text(
                "INSERT INTO runs (tenant_id, server_id, trigger, period, weekly, scheduled_for,"
                " state, attempts, created_at, not_before, start_by) VALUES ('tenant-a',"
                " :server, 'manual', '2026-12-01', false, now(), 'pending', 0, now(), now(),"
                " now())"
            ),
            {"server": server_a},
        )
    # Once it has ended, a new one may be asked for.
    with sessions.begin() as session:
        session.execute(
            sa.text("UPDATE runs SET state = 'cancelled', finished_at = now() WHERE id = :id"),
            {"id": first["id"]},
        )
    again = alice.request("POST", runs_url(alice, server_a)).json()["run"]
    assert again["id"] != first["id"]


def test_tenants_see_a_short_reason_and_operators_the_full_text(alice, server_a, sessions) -> None:  # type: ignore[no-untyped-def]
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    run_id = alice.request("POST", runs_url(alice, server_a)).json()["run"]["id"]
    internal = (
        "create failed: server x: HTTP 500: Internal Server Error from "
        "http://10.20.30.40:8774/v2.1/servers/x/action (attempt 3 of 3)"
    )
    with sessions.begin() as session:
        session.execute(
            sa.text(
                "UPDATE runs SET state = 'failed', reason = 'create_error', error = :error,"
                " finished_at = now() WHERE id = :id"
            ),
            {"error": internal, "id": run_id},
        )

    [seen] = alice.request("GET", runs_url(alice, server_a)).json()["runs"]
    assert seen["error"] == "create_error: the cloud answered 500"
    root = alice.as_token("root", "operators")
    [full] = root.request("GET", root.url("/admin/v1/runs?state=failed")).json()["runs"]
    assert full["error"] == internal and full["reason"] == "create_error"


def test_runs_paginate_newest_first(alice, server_a, sessions) -> None:
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    ids = []
    for _ in range(5):
        ids.append(alice.request("POST", runs_url(alice, server_a)).json()["run"]["id"])
        with transaction(sessions) as session:  # finish it so the next POST makes a new one
            session.get(Run, ids[-1]).state = "done"
    seen, url = [], runs_url(alice, server_a) + "?limit=2"
    while url:
        body = alice.request("GET", url).json()
        seen += [r["id"] for r in body["runs"]]
        url = body.get("runs_links", [{}])[0].get("href")
    assert seen == sorted(ids, reverse=True)
    assert alice.request("GET", runs_url(alice, server_a) + "?marker=x").status_code == 400


def test_runs_are_private_to_the_tenant(alice, server_a, cloud) -> None:
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    alice.request("POST", runs_url(alice, server_a))
    bob = alice.as_token("bob", "tenant-b")
    # Bob on his own path sees nothing of alice's server; on hers he is refused.
    mine = bob.request("GET", bob.schedule_url(server_a) + "/runs")
    assert mine.status_code == 404
    theirs = bob.request("GET", runs_url(alice, server_a))
    assert theirs.status_code == 403
    observer = alice.as_token("olive")
    assert observer.request("GET", runs_url(alice, server_a)).status_code == 200
    assert observer.request("POST", runs_url(alice, server_a)).status_code == 403


def test_admin_reads_and_sets_the_cap(alice) -> None:
    root = alice.as_token("root")
    assert alice.request("GET", alice.url("/admin/v1/cap")).status_code == 403
    cap = root.request("GET", root.url("/admin/v1/cap"))
    assert cap.json() == {"inflight_cap": 50, "in_flight": 0}
    changed = root.request("PUT", root.url("/admin/v1/cap"), json={"inflight_cap": 7})
    assert changed.status_code == 200
    assert changed.json()["inflight_cap"] == 7
    assert root.request("GET", root.url("/admin/v1/cap")).json()["inflight_cap"] == 7
    for bad in (
        {"inflight_cap": 0},
        {"inflight_cap": "7"},
        {"inflight_cap": 7.0},
        {},
        [],
        {"inflight_cap": 7, "x": 1},
    ):
        answer = root.request("PUT", root.url("/admin/v1/cap"), json=bad)
        assert answer.status_code == 400, bad
    assert root.request("GET", root.url("/admin/v1/cap")).json()["inflight_cap"] == 7


def test_admin_reads_and_sets_the_per_tenant_ceiling(alice, settings, sessions) -> None:
    root = alice.as_token("root")
    url = root.url("/admin/v1/tenant-inflight-max")
    assert alice.request("GET", alice.url("/admin/v1/tenant-inflight-max")).status_code == 403
    assert (
        alice.request("PUT", alice.url("/admin/v1/tenant-inflight-max"), json={}).status_code == 403
    )
    assert root.request("GET", url).json() == {
        "tenant_inflight_max": 0,
        "inflight_cap": 50,
        "most_held": 0,
    }
    changed = root.request("PUT", url, json={"tenant_inflight_max": 3})
    assert changed.status_code == 200, changed.text
    assert changed.json()["tenant_inflight_max"] == 3
    assert root.request("GET", url).json()["tenant_inflight_max"] == 3
    for bad in (
        {"tenant_inflight_max": -1},
        {"tenant_inflight_max": "3"},
        {"tenant_inflight_max": 3.0},
        {"tenant_inflight_max": None},
        {},
        {"tenant_inflight_max": 3, "x": 1},
    ):
        answer = root.request("PUT", url, json=bad)
        assert answer.status_code == 400, bad
        if bad.keys() == {"tenant_inflight_max"}:
            assert "tenant_inflight_max" in answer.json()["badRequest"]["message"], bad
    assert root.request("GET", url).json()["tenant_inflight_max"] == 3
    # 0 lifts the ceiling again; what the workers read is what was set.
    assert root.request("PUT", url, json={"tenant_inflight_max": 0}).status_code == 200
    from common.runtime_settings import tenant_inflight_max

    with sessions() as session:
        assert tenant_inflight_max(session, settings.tenant_inflight_max) == 0


def test_admin_runs_by_state_and_summary(alice, server_a, cloud) -> None:
    root = alice.as_token("root")
    [server_b] = cloud.add_servers("tenant-b", 1)
    bob = alice.as_token("bob", "tenant-b")
    alice.post_schedule(server_a, {"image_schedule": {"retention": 2}})
    bob.post_schedule(server_b, {"image_schedule": {"retention": 2}})
    alice.request("POST", runs_url(alice, server_a))
    bob.request("POST", runs_url(bob, server_b))
    pending = root.request("GET", root.url("/admin/v1/runs?state=pending")).json()["runs"]
    assert {(r["tenant_id"], r["server_id"]) for r in pending} == {
        ("tenant-a", server_a),
        ("tenant-b", server_b),
    }
    assert root.request("GET", root.url("/admin/v1/runs?state=done")).json()["runs"] == []
    assert root.request("GET", root.url("/admin/v1/runs?state=nope")).status_code == 400
    summary = root.request("GET", root.url("/admin/v1/runs/summary")).json()
    assert summary["by_state"]["pending"] == 2
    assert summary["in_flight"] == 0
    assert summary["oldest_waiting_s"] >= 0


def test_admin_runs_pages_keep_the_state_filter(alice, cloud) -> None:
    root = alice.as_token("root")
    servers = cloud.add_servers("tenant-a", 3)
    for server in servers:
        alice.post_schedule(server, {"image_schedule": {"retention": 1}})
        alice.request("POST", runs_url(alice, server))
    seen, url = [], root.url("/admin/v1/runs?state=pending&limit=2")
    while url:
        body = root.request("GET", url).json()
        seen += [r["server_id"] for r in body["runs"]]
        url = body.get("runs_links", [{}])[0].get("href")
        if url:
            assert "state=pending" in url
    assert sorted(seen) == sorted(servers)
