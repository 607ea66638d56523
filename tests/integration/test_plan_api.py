"""The planner against PostgreSQL through the operator API and the CLI: the planned week,
rebalancing under the cap as a job (one at a time, kept when the broker is down, run again
when its worker is lost), stability, and the weekly window."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa
from click.testing import CliRunner

from common.db import transaction
from common.logging import JsonFormatter
from common.models import Rebalance, Schedule
from common.slots import in_window, next_run_at
from scheduled_images.cli import cli
from scheduler import rebalances
from scheduler.planning import Observer, QuietObserver
from tests.support.fleets import crowd
from tests.support.processes import free_port

NOW = dt.datetime.now(dt.UTC)


def run_job(sessions, job_id: str) -> rebalances.Outcome:  # type: ignore[no-untyped-def]
    """What the plan worker does with the job's message."""
    return rebalances.run_job(sessions, job_id, 50, lambda: dt.datetime.now(dt.UTC))


def test_planned_week_and_rebalance_under_the_cap(alice, sessions, caplog) -> None:
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
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["state"] == "queued" and job["summary"] is None and job["attempts"] == 0
    assert answer.headers["Location"] == f"/admin/v1/plan/rebalances/{job['id']}"
    # Asked for, not done: nothing moved yet.
    assert root.request("GET", root.url("/admin/v1/plan")).json()["planned_peak"] == 50
    assert root.request("GET", root.url(answer.headers["Location"])).json() == job

    caplog.set_level(logging.INFO, logger="scheduled_images.rebalance")
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("scheduled_images.rebalance").addHandler(handler)
    try:
        assert run_job(sessions, job["id"]) is rebalances.Outcome.DONE
    finally:
        logging.getLogger("scheduled_images.rebalance").removeHandler(handler)
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    stages = [line["stage"] for line in logged if line["msg"] == "rebalance stage"]
    assert "placing 50 schedules day by day under 10" in stages
    assert all(line["rebalance_id"] == job["id"] for line in logged)
    done = root.request("GET", root.url(answer.headers["Location"])).json()
    assert done["state"] == "done" and done["error"] is None and done["attempts"] == 1
    assert done["started_at"] <= done["finished_at"]
    summary = done["summary"]
    assert summary["schedules"] == 50 and summary["cap"] == 10
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
    # A second message for the job does nothing; a second rebalance moves nothing.
    assert run_job(sessions, job["id"]) is rebalances.Outcome.SKIPPED
    again = root.request("POST", root.url("/admin/v1/plan/rebalance")).json()
    assert again["id"] != job["id"]
    assert run_job(sessions, again["id"]) is rebalances.Outcome.DONE
    assert (
        root.request("GET", root.url(f"/admin/v1/plan/rebalances/{again['id']}")).json()["summary"][
            "moved"
        ]
        == 0
    )
    assert alice.request("POST", alice.url("/admin/v1/plan/rebalance")).status_code == 403
    assert alice.request("GET", root.url(answer.headers["Location"])).status_code == 403


def test_asking_again_answers_the_active_job(alice, sessions) -> None:
    root = alice.as_token("root")
    crowd(sessions, 5)
    url = root.url("/admin/v1/plan/rebalance")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: root.request("POST", url), range(8)))
    assert {a.status_code for a in answers} == {202}
    [job_id] = {a.json()["id"] for a in answers}
    # Still the same job while it runs.
    with transaction(sessions) as session:
        session.execute(sa.update(Rebalance).values(state="running"))
    assert root.request("POST", url).json()["id"] == job_id
    with transaction(sessions) as session:
        session.execute(sa.update(Rebalance).values(state="queued"))
    assert run_job(sessions, job_id) is rebalances.Outcome.DONE
    assert root.request("POST", url).json()["id"] != job_id
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Rebalance)) == 2


def test_a_missing_or_malformed_job_id_is_404(alice) -> None:
    root = alice.as_token("root")
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "1", "%00", "x" * 300, "' OR 1=1 --"):
        answer = root.request("GET", root.url(f"/admin/v1/plan/rebalances/{job_id}"))
        assert answer.status_code == 404, (job_id, answer.text)
        assert answer.json()["itemNotFound"]["code"] == 404
        assert "does not exist" in answer.json()["itemNotFound"]["message"]


def test_a_job_asked_for_while_the_broker_is_down_is_kept_for_the_tick(
    settings, sessions, tokens
) -> None:  # type: ignore[no-untyped-def]
    from api import create_app
    from tests.conftest import ServedApp

    crowd(sessions, 5)
    down = settings.replace(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    served = ServedApp(create_app(down, sessions=sessions))
    try:
        started = time.monotonic()
        answer = requests.post(
            f"{served.base}/admin/v1/plan/rebalance", headers={"X-Auth-Token": "root"}, timeout=20
        )
        assert time.monotonic() - started < 10
    finally:
        served.stop()
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    # Committed, and marked unsent: the next tick sends it, once.
    with transaction(sessions) as session:
        assert rebalances.take_lost_jobs(session, NOW, 60) == [job_id]
    with transaction(sessions) as session:
        assert rebalances.take_lost_jobs(session, NOW, 60) == []
    assert run_job(sessions, job_id) is rebalances.Outcome.DONE


def test_a_job_whose_worker_was_lost_is_queued_again(sessions) -> None:
    crowd(sessions, 5)
    with transaction(sessions) as session:
        job, _ = rebalances.request_rebalance(session, NOW, 60)
        job.state, job.attempts = "running", 1
        job.lease_until = NOW + dt.timedelta(seconds=rebalances.TIME_LIMIT_S)
    # A live worker holds the rebalance lock: its job is left alone.
    with transaction(sessions) as holder:
        assert rebalances.lock_rebalancing(holder, wait=False)
        with transaction(sessions) as session:
            assert rebalances.take_lost_jobs(session, NOW, 60) == []
        assert run_job(sessions, str(job.id)) is rebalances.Outcome.BUSY
    # Nobody holds it: the worker died mid-rebalance, and the job goes back on the queue.
    with transaction(sessions) as session:
        assert rebalances.take_lost_jobs(session, NOW, 60) == [str(job.id)]
    with sessions() as session:
        assert session.get(Rebalance, job.id).state == "queued"
    assert run_job(sessions, str(job.id)) is rebalances.Outcome.DONE
    with sessions() as session:
        row = session.get(Rebalance, job.id)
    assert (row.state, row.attempts) == ("done", 2)


def test_a_running_job_shows_the_planner_s_stage(alice, sessions, monkeypatch) -> None:
    """Near the bound most of a rebalance goes after the placing: the operator API says what
    the planner is doing while the job runs, and a new attempt starts with no stage."""
    root = alice.as_token("root")
    crowd(sessions, 12)
    job = root.request("POST", root.url("/admin/v1/plan/rebalance")).json()
    assert job["stage"] is None
    seen: list[dict] = []
    real = rebalances.rebalance_fleet

    class Looking(QuietObserver):
        """Passes each stage on to the job's observer, then looks at the job."""

        def __init__(self, job_stages: Observer) -> None:
            self.job_stages = job_stages

        def stage(self, what: str) -> None:
            self.job_stages.stage(what)
            url = root.url(f"/admin/v1/plan/rebalances/{job['id']}")
            seen.append(root.request("GET", url).json())

    def watched(session, cap, now, observer):  # type: ignore[no-untyped-def]
        return real(session, cap, now, observer=Looking(observer))

    monkeypatch.setattr(rebalances, "rebalance_fleet", watched)
    assert run_job(sessions, job["id"]) is rebalances.Outcome.DONE
    assert [body["state"] for body in seen] == ["running"] * len(seen)
    assert "placing 12 schedules day by day under 50" in [body["stage"] for body in seen]
    done = root.request("GET", root.url(f"/admin/v1/plan/rebalances/{job['id']}")).json()
    assert done["state"] == "done" and done["stage"] == seen[-1]["stage"]


def test_a_job_fails_with_its_error_and_moves_nothing(alice, sessions, monkeypatch) -> None:
    root = alice.as_token("root")
    crowd(sessions, 12)
    root.request("PUT", root.url("/admin/v1/cap"), json={"inflight_cap": 2})
    with sessions() as session:
        before = dict(session.execute(sa.select(Schedule.id, Schedule.slot_s)).all())

    def half_done(session, cap, now, observer):  # type: ignore[no-untyped-def]
        observer.stage("placing 12 schedules day by day under 2")
        session.execute(sa.update(Schedule).values(slot_s=0))
        raise ValueError("the planner choked")

    monkeypatch.setattr(rebalances, "rebalance_fleet", half_done)
    job = root.request("POST", root.url("/admin/v1/plan/rebalance")).json()
    assert run_job(sessions, job["id"]) is rebalances.Outcome.FAILED
    failed = root.request("GET", root.url(f"/admin/v1/plan/rebalances/{job['id']}")).json()
    assert failed["state"] == "failed" and failed["summary"] is None
    assert failed["error"] == "ValueError: the planner choked"
    assert failed["stage"] == "placing 12 schedules day by day under 2"  # where it failed
    with sessions() as session:
        assert dict(session.execute(sa.select(Schedule.id, Schedule.slot_s)).all()) == before
    # A worker lost on every attempt does not loop for ever.
    with transaction(sessions) as session:
        job, _ = rebalances.request_rebalance(session, NOW, 60)
        job.attempts = rebalances.MAX_ATTEMPTS
    assert run_job(sessions, str(job.id)) is rebalances.Outcome.FAILED
    with sessions() as session:
        assert "gave up after 3 attempts" in session.get(Rebalance, job.id).error


def test_finished_jobs_are_trimmed_after_the_history_days(sessions) -> None:
    with transaction(sessions) as session:
        old, _ = rebalances.request_rebalance(session, NOW - dt.timedelta(days=40), 60)
        old.state, old.finished_at = "done", NOW - dt.timedelta(days=31)
    with transaction(sessions) as session:
        recent, _ = rebalances.request_rebalance(session, NOW - dt.timedelta(days=1), 60)
        recent.state, recent.finished_at = "failed", NOW - dt.timedelta(days=1)
    with transaction(sessions) as session:
        # Queued however long ago: still to run, never trimmed.
        waiting, _ = rebalances.request_rebalance(session, NOW - dt.timedelta(days=90), 60)
    with transaction(sessions) as session:
        assert rebalances.trim_finished(session, NOW, keep_days=30) == 1
    with sessions() as session:
        left = set(session.scalars(sa.select(Rebalance.id)))
    assert left == {recent.id, waiting.id}


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
    assert "s  placing 12 schedules day by day under 4" in moved.output  # a stage, timed
    assert "against cap 4" in moved.output
    after = runner.invoke(cli, ["plan", "show"])
    assert "planned peak 4" in after.output or "planned peak 3" in after.output


def test_plan_rebalance_waits_for_the_rebalance_running(settings, sessions, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    crowd(sessions, 6)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    done: list = []
    with transaction(sessions) as holder:
        assert rebalances.lock_rebalancing(holder, wait=False)
        command = threading.Thread(
            target=lambda: done.append(CliRunner().invoke(cli, ["plan", "rebalance"]))
        )
        command.start()
        time.sleep(1)
        assert not done
    command.join(30)
    [result] = done
    assert result.exit_code == 0, result.output
    assert "another rebalance is running; waiting" in result.output
    assert "6 schedules" in result.output


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
