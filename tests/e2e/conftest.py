"""End-to-end fixtures: PostgreSQL, a Redis of the test's own, real worker and beat processes."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from common import schedules
from common.db import transaction
from common.models import Run, SimImage
from tests.support.processes import RedisServer, ServiceProcess, wait_for

FAST = {
    "TICK_INTERVAL_S": "0.5",
    "LEASE_S": "3",
    "POLL_INTERVAL_S": "0.3",
    "BUSY_RETRY_S": "2",
    "RETRY_ATTEMPTS": "2",
    "RETRY_DELAY_S": "1",
    "RUN_TIMEOUT_S": "30",
    "SIM_SECONDS_PER_GB": "0.02",
    "SIM_SLOW_CREATE_S": "4",
    "COMPUTE_TIMEOUT_S": "2",
    "INFLIGHT_CAP": "50",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
}


class Pipeline:
    """The service's back end, running for real, and ways to look at what it did."""

    def __init__(self, database_url: str, redis: RedisServer, sessions, cloud, workdir: Path):  # type: ignore[no-untyped-def]
        self.redis = redis
        self.sessions = sessions
        self.cloud = cloud
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            **FAST,
            "DATABASE_URL": database_url,
            "BROKER_URL": redis.url,
            "STATE_DIR": str(workdir / "state"),
        }
        self.processes: list[ServiceProcess] = []

    def start(self, *args: str, **env: str) -> ServiceProcess:
        name = args[0]
        process = ServiceProcess(
            list(args), {**self.env, **env}, self.workdir / f"{name}-{len(self.processes)}.log"
        )
        self.processes.append(process)
        return process

    def worker(
        self, queues: str = "tick,create,poll,retention", concurrency: int = 2, **env: str
    ) -> ServiceProcess:
        return self.start("worker", "--queues", queues, "--concurrency", str(concurrency), **env)

    def beat(self, **env: str) -> ServiceProcess:
        index = len(self.processes)
        return self.start("beat", "--schedule-file", str(self.workdir / f"beat-{index}"), **env)

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.workdir.glob("*.log"))

    # -- arranging -------------------------------------------------------------------------

    def enable(
        self,
        tenant: str,
        server: str,
        retention: int = 3,
        day_of_week: int | None = None,
        due: bool = True,
    ) -> None:
        """A schedule, due now when `due` (the planner would put it hours away)."""
        now = dt.datetime.now(dt.UTC)
        with transaction(self.sessions) as session:
            row = schedules.upsert(
                session,
                tenant_id=tenant,
                server_id=server,
                server_name=f"srv-{server[:6]}",
                retention=retention,
                day_of_week=day_of_week,
                slot_s=3600 if day_of_week is None else day_of_week * 86400 + 3600,
                default_duration_s=60,
                now=now - dt.timedelta(seconds=2),
            )
            if due:
                row.next_run_at = now - dt.timedelta(seconds=1)

    def run_now(self, tenant: str, server: str) -> int:
        from common.runs import request_run

        with transaction(self.sessions) as session:
            return request_run(session, tenant, server, dt.datetime.now(dt.UTC)).id

    # -- looking ---------------------------------------------------------------------------

    def runs(self, server: str | None = None) -> list[Run]:
        with self.sessions() as session:
            query = sa.select(Run).order_by(Run.id)
            if server is not None:
                query = query.where(Run.server_id == server)
            return list(session.scalars(query))

    def images(self, server: str) -> list[SimImage]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    sa.select(SimImage)
                    .where(SimImage.server_id == server)
                    .order_by(SimImage.created_at)
                )
            )

    def wait_runs_final(self, count: int, timeout: float = 60) -> list[Run]:
        def finished() -> list[Run] | None:
            runs = self.runs()
            done = [r for r in runs if r.finished_at is not None]
            return runs if len(runs) >= count and len(done) == len(runs) else None

        try:
            return wait_for(finished, timeout, f"{count} runs to finish", interval=0.2)  # type: ignore[return-value]
        except AssertionError:
            states = [(r.id, r.state, r.error) for r in self.runs()]
            raise AssertionError(f"runs not finished: {states}\n{self.logs()}") from None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(database_url, redis_server, sessions, cloud, tmp_path) -> Iterator[Pipeline]:  # type: ignore[no-untyped-def]
    running = Pipeline(database_url, redis_server, sessions, cloud, tmp_path)
    yield running
    running.stop_all()
