"""One clock across processes: kept in PostgreSQL, read alike by the API, the workers and the
simulated cloud."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from api import create_app
from common.clock_store import SharedClock, shared_clock
from common.compute import make_driver
from common.compute.base import ACTIVE
from common.models import ClockEpoch
from common.settings import SettingsError
from tests.conftest import Client, ServedApp

SIMULATED = dt.datetime(2030, 1, 6, tzinfo=dt.UTC)
# Simulated seconds per real second: a simulated day in two real minutes.
SPEED = 720.0

ANOTHER_PROCESS = """
import json, sys
from common.clock_store import shared_clock
from common.db import make_engine, make_session_factory
clock = shared_clock(make_session_factory(make_engine(sys.argv[1])), float(sys.argv[2]))
print(json.dumps([clock.speed, clock.real_start.isoformat(), clock.start.isoformat()]))
"""


def test_the_first_process_makes_the_clock_and_another_reads_the_same(
    sessions, database_url: str
) -> None:
    made = shared_clock(sessions, SPEED, start=SIMULATED)
    assert made.start == SIMULATED
    assert abs(made.now() - SIMULATED) < dt.timedelta(hours=1)
    printed = subprocess.run(
        [sys.executable, "-c", ANOTHER_PROCESS, database_url, str(SPEED)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    speed, real_start, start = json.loads(printed)
    assert speed == SPEED
    assert dt.datetime.fromisoformat(real_start) == made.real_start
    assert dt.datetime.fromisoformat(start) == SIMULATED


def test_a_process_at_another_speed_is_refused(sessions) -> None:
    shared_clock(sessions, SPEED, start=SIMULATED)
    with pytest.raises(SettingsError, match="CLOCK_SPEED is 1 but .* runs at 720"):
        shared_clock(sessions, 1.0)
    with pytest.raises(SettingsError, match="CLOCK_SPEED is 2"):
        SharedClock(sessions, 2.0).now()


def test_a_worker_reads_the_stored_clock(
    sessions, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import runtime

    shared_clock(sessions, SPEED, start=SIMULATED)
    monkeypatch.setattr(runtime, "_settings", settings.replace(clock_speed=SPEED))
    monkeypatch.setattr(runtime, "_runtime", None)
    rt = runtime.runtime()
    assert abs(rt.clock() - SIMULATED) < dt.timedelta(hours=1)
    assert rt.clock.real_seconds(720) == 1.0  # type: ignore[attr-defined]


def test_the_wall_clock_writes_nothing(sessions) -> None:
    clock = shared_clock(sessions, 1.0)
    assert abs(clock.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ClockEpoch)) == 0


def test_the_api_and_the_simulated_cloud_run_on_the_stored_clock(
    sessions, settings, tokens, cloud
) -> None:
    shared_clock(sessions, SPEED, start=SIMULATED)
    fast = settings.replace(clock_speed=SPEED, sim_seconds_per_gb=60.0)
    served = ServedApp(create_app(fast, sessions=sessions))
    try:
        alice = Client(served.base, "alice", "tenant-a")
        server = cloud.add_servers("tenant-a", 1, disk_gb=10)[0]
        answer = alice.post_schedule(server, {"image_schedule": {"retention": 2}})
        assert answer.status_code == 200, answer.text
        next_run = dt.datetime.strptime(
            answer.json()["image_schedule"]["next_run_at"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=dt.UTC)
        assert SIMULATED < next_run <= SIMULATED + dt.timedelta(days=1, hours=1)
    finally:
        served.stop()

    # Ten minutes of simulated image, under a second of real time at this speed.
    driver = make_driver(fast, sessions, SharedClock(sessions, SPEED))
    image_id = driver.create_image("tenant-a", server, "clocked", {})
    assert driver.get_image("tenant-a", image_id).status != ACTIVE
    deadline = time.monotonic() + 10
    while driver.get_image("tenant-a", image_id).status != ACTIVE:
        assert time.monotonic() < deadline, "a ten-minute image at 720x took ten real seconds"
        time.sleep(0.05)
