"""PostgreSQL restarted under a running service: tick, workers and API recover by themselves,
nothing lost, nothing done twice. The test runs a PostgreSQL of its own, to stop it freely."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from api.auth import add_token
from common import migrate
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.runs import RunState
from tests.e2e.conftest import Pipeline
from tests.support.postgres import OwnPostgres
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def own_pipeline(tmp_path: Path, redis_server) -> Iterator[tuple[Pipeline, OwnPostgres]]:  # type: ignore[no-untyped-def]
    # Not under pytest's own temporary folder: the server runs as a user of its own, and any
    # pytest starting meanwhile makes that folder its owner's alone again (0700), after which
    # the server's user could no longer reach its data to stop or start.
    state = Path(tempfile.mkdtemp(prefix="si-own-pg-"))
    postgres = OwnPostgres(state / "pgstate")
    migrate.upgrade(postgres.url)
    engine = make_engine(postgres.url)
    sessions = make_session_factory(engine)
    cloud = SimulatedDriver(sessions, seconds_per_gb=0.02)
    running = Pipeline(postgres.url, redis_server, sessions, cloud, tmp_path)
    try:
        yield running, postgres
    finally:
        running.stop_all()
        engine.dispose()
        postgres.close()
        shutil.rmtree(state, ignore_errors=True)


def test_everything_recovers_from_a_database_restart(own_pipeline, tmp_path: Path) -> None:
    pipeline, postgres = own_pipeline
    servers = pipeline.cloud.add_servers("tenant-a", 10, disk_gb=150)  # 3 s each
    for server in servers:
        pipeline.enable("tenant-a", server)
    tokens = tmp_path / "tokens.json"
    add_token(tokens, "alice", "tenant-a", ["creator"])
    port = free_port()
    pipeline.start("api", "--port", str(port), AUTH_TOKENS_FILE=str(tokens), API_WORKERS="1")
    pipeline.worker(concurrency=3)
    pipeline.beat()
    url = f"http://127.0.0.1:{port}/v2/tenant-a/servers/{servers[0]}/rax-si-image-schedule"

    def api_status() -> int:
        try:
            return requests.get(url, headers={"X-Auth-Token": "alice"}, timeout=5).status_code
        except requests.ConnectionError:
            return 0

    wait_for(lambda: api_status() == 200, 30, "the API")
    wait_for(
        lambda: [r for r in pipeline.runs() if r.state in ("creating", "saving")],
        30,
        "runs in flight",
    )
    postgres.stop()
    answer = requests.get(url, headers={"X-Auth-Token": "alice"}, timeout=10)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    time.sleep(3)
    postgres.start()
    wait_for(lambda: api_status() == 200, 30, "the API to recover")
    runs = pipeline.wait_runs_final(10, timeout=90)
    assert {r.state for r in runs} == {RunState.DONE}, [(r.state, r.error) for r in runs]
    for server in servers:
        assert len(pipeline.images(server)) == 1
