"""A small soak through the real processes: a few hundred servers for two simulated days, a
worker pool killed every six simulated hours and Redis restarted twice; every due period
imaged once, never over the cap, retention kept, and the report says so."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import migrate, schedules
from common.db import make_engine, make_session_factory, transaction
from tests.support import databases
from tests.support.processes import BIN

pytestmark = pytest.mark.slow

SOAK = (
    "--servers", "300", "--tenants", "30", "--days", "2", "--speed", "3000",
    "--cap-factor", "4", "--faults", "kill-workers,redis-restart", "--seed", "5",
)  # fmt: skip


@pytest.fixture
def soak_database(pg_admin_url: str) -> Iterator[str]:
    url = databases.create(pg_admin_url, "si_soak")
    yield url
    databases.drop(pg_admin_url, url)


def run_soak(database_url: str, report: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "BROKER_URL"))}
    env.update(DATABASE_URL=database_url, STATE_DIR=str(report.parent / "state"))
    return subprocess.run(
        [str(BIN / "scheduled-images"), "soak", *args, "--report", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_a_small_soak_with_faults_ends_ok(soak_database: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    done = run_soak(soak_database, report, *SOAK)
    assert (report / "summary.json").exists(), done.stderr[-3000:]
    summary = json.loads((report / "summary.json").read_text())
    assert done.returncode == (0 if summary["ok"] else 1), done.stderr[-3000:]
    assert summary["ok"], (summary, (report / "service.log").read_text()[-3000:])
    assert summary["servers"] == 300 and summary["days"] == 2 and summary["speed"] == 3000
    # Two days of about 300 schedules, most daily: every period due ended, none imaged twice.
    assert 400 < summary["periods_due"] == summary["periods_done"] + summary["runs_failed"]
    assert summary["periods_done"] >= 0.8 * summary["periods_due"]
    # A run fails here only by time: a pool down at this clock speed holds runs past their
    # window or deadline. No image failed: this soak injects no cloud errors.
    assert set(summary["failed_by_reason"]) <= {"missed_window", "timeout"}
    assert summary["periods_lost"] == summary["duplicate_images"] == 0
    assert summary["cap_violations"] == summary["retention_violations"] == 0
    assert 0 < summary["max_in_flight"] <= summary["cap"]
    assert summary["lateness_p50_s"] >= 0 and summary["runs_per_s"] > 0
    kinds = [fault["fault"] for fault in summary["faults"]]
    assert kinds.count("kill-workers") == 7 and kinds.count("redis-restart") == 2
    assert "exited" not in kinds
    assert all("SIGKILL" in f["detail"] for f in summary["faults"] if f["fault"] == "kill-workers")
    assert (report / "load.png").stat().st_size > 0 and (report / "lateness.png").exists()


def test_a_used_database_or_an_outside_server_restart_is_refused(
    soak_database: str, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    refused = run_soak(soak_database, report, *SOAK[:8], "--faults", "postgres-restart")
    assert refused.returncode == 2
    assert "postgres-restart restarts a PostgreSQL of the soak's own" in refused.stderr
    assert not (report / "summary.json").exists()


def test_a_database_holding_schedules_is_refused(soak_database: str, tmp_path: Path) -> None:
    migrate.upgrade(soak_database)
    engine = make_engine(soak_database)
    try:
        with transaction(make_session_factory(engine)) as session:
            schedules.upsert(
                session,
                tenant_id="someone",
                server_id="a-server",
                server_name="theirs",
                retention=3,
                day_of_week=None,
                slot_s=3600,
                default_duration_s=600,
                now=dt.datetime.now(dt.UTC),
            )
    finally:
        engine.dispose()
    refused = run_soak(soak_database, tmp_path / "report", *SOAK[:8])
    assert refused.returncode == 2
    assert "already holds 1 schedules" in refused.stderr
