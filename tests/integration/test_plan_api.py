"""The planner against PostgreSQL through the operator API and the CLI: the planned week,
rebalancing under the cap, stability, and the weekly window."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from click.testing import CliRunner

from common import schedules
from common.cli import cli
from common.db import transaction
from common.models import Schedule
from common.slots import in_window, next_run_at

NOW = dt.datetime.now(dt.UTC)


def crowd(sessions, count: int, day: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """`count` one-hour schedules all on the same minute: the plan a naive scheduler makes."""
    slot = 3600 if day is None else day * 86400 + 3600
    with transaction(sessions) as session:
        for index in range(count):
            row = schedules.upsert(
                session,
                tenant_id=f"t{index % 3}",
                server_id=f"{day}-{index}",
                server_name="s",
                retention=1,
                day_of_week=day,
                slot_s=slot,
                default_duration_s=3600,
                now=NOW,
            )
            row.expected_duration_s = 3600


def test_planned_week_and_rebalance_under_the_cap(alice, sessions) -> None:
    root = alice.as_token("root")
    crowd(sessions, 30)
    crowd(sessions, 20, day=6)
    root.request("PUT", root.url("/admin/v1/cap"), json={"inflight_cap": 10})
    week = root.request("GET", root.url("/admin/v1/plan")).json()
    assert len(week["hours"]) == 168
    assert week["planned_peak"] == 50
    assert week["inflight_cap"] == 10
    assert week["schedules"] == 50
    assert 0 < week["lower_bound"] <= 10

    answer = root.request("POST", root.url("/admin/v1/plan/rebalance"))
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["peak"] <= 10
    assert summary["moved"] > 0
    assert summary["on_day_share"] == 1.0
    assert root.request("GET", root.url("/admin/v1/plan")).json()["planned_peak"] <= 10

    with sessions() as session:
        rows = list(session.scalars(sa.select(Schedule)))
    for row in rows:
        assert in_window(row.day_of_week, row.slot_s)
        assert row.next_run_at == next_run_at(
            row.day_of_week, row.slot_s, row.next_run_at - dt.timedelta(seconds=1)
        )
    # A second rebalance with nothing changed moves nothing.
    again = root.request("POST", root.url("/admin/v1/plan/rebalance")).json()
    assert again["moved"] == 0
    assert alice.request("POST", alice.url("/admin/v1/plan/rebalance")).status_code == 403


def test_plan_commands(settings, sessions, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    crowd(sessions, 12)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("INFLIGHT_CAP", "4")
    runner = CliRunner()
    shown = runner.invoke(cli, ["plan", "show"])
    assert shown.exit_code == 0, shown.output
    assert "planned peak 12" in shown.output
    moved = runner.invoke(cli, ["plan", "rebalance"])
    assert moved.exit_code == 0, moved.output
    assert "12 schedules" in moved.output
    assert "against cap 4" in moved.output
    after = runner.invoke(cli, ["plan", "show"])
    assert "planned peak 4" in after.output or "planned peak 3" in after.output


def test_enabling_places_each_schedule_under_the_cap_at_once(alice, cloud) -> None:
    root = alice.as_token("root")
    root.request("PUT", root.url("/admin/v1/cap"), json={"inflight_cap": 2})
    servers = cloud.add_servers("tenant-a", 12)
    weekly = cloud.add_servers("tenant-a", 6)
    for server in servers:
        assert alice.post_schedule(server, {"image_schedule": {"retention": 1}}).ok
    for server in weekly:
        body = {"image_schedule": {"retention": 1, "day_of_week": "sunday"}}
        assert alice.post_schedule(server, body).ok
    week = root.request("GET", root.url("/admin/v1/plan")).json()
    # 12 daily and 6 weekly runs of 15 minutes fit a cap of 2 with room to spare.
    assert week["planned_peak"] <= 2
    starts = [
        alice.get_schedule(s).json()["image_schedule"]["next_run_at"] for s in servers + weekly
    ]
    assert len(set(starts)) == len(starts)
    for server in weekly:
        when = dt.datetime.strptime(
            alice.get_schedule(server).json()["image_schedule"]["next_run_at"],
            "%Y-%m-%dT%H:%M:%SZ",
        )
        assert when.weekday() == 6  # on the chosen day: the cap leaves room
    # Re-posting the same kind of schedule keeps its slot.
    before = alice.get_schedule(servers[0]).json()
    alice.post_schedule(servers[0], {"image_schedule": {"retention": 5}})
    after = alice.get_schedule(servers[0]).json()
    assert after["image_schedule"]["next_run_at"] == before["image_schedule"]["next_run_at"]
