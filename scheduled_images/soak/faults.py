"""Faults injected while the soak runs, at simulated times fixed at its start: a killed worker
pool (restarted), Redis and PostgreSQL restarts. The chance faults of the cloud itself
(`compute-errors`) are the simulated driver's, switched on by settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import threading
import time

from common.clock import Clock
from scheduled_images.soak.servers import Servers
from scheduled_images.soak.service import Service

log = logging.getLogger(__name__)

FAULTS = ("kill-workers", "redis-restart", "postgres-restart", "compute-errors")
#: Simulated hours between two killed pools.
KILL_EVERY_H = 6
#: Real seconds a restarted server stays down.
REDIS_DOWN_S = 1.0
POSTGRES_DOWN_S = 2.0


def parse_faults(text: str) -> frozenset[str]:
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    return chosen


@dataclasses.dataclass(frozen=True)
class Planned:
    at: dt.datetime
    kind: str


def fault_plan(faults: frozenset[str], start: dt.datetime, days: float) -> list[Planned]:
    """When each fault strikes: pools every six hours, Redis at a third and two thirds of the
    soak, PostgreSQL half way."""
    span = dt.timedelta(days=days)
    plan = []
    if "kill-workers" in faults:
        step = dt.timedelta(hours=KILL_EVERY_H)
        plan += [Planned(start + step * k, "kill-workers") for k in range(1, int(span / step) + 1)]
    if "redis-restart" in faults:
        plan += [Planned(start + span * k / 3, "redis-restart") for k in (1, 2)]
    if "postgres-restart" in faults:
        plan.append(Planned(start + span / 2, "postgres-restart"))
    return sorted((p for p in plan if p.at < start + span), key=lambda p: p.at)


class FaultInjector:
    def __init__(
        self,
        plan: list[Planned],
        clock: Clock,
        start: dt.datetime,
        service: Service,
        servers: Servers,
        seed: int,
    ) -> None:
        self._plan = plan
        self._clock = clock
        self._start = start
        self._service = service
        self._servers = servers
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        #: What was injected: kind, simulated time, day of the soak, what exactly.
        self.injected: list[dict] = []

    def note(self, kind: str, detail: str) -> None:
        now = self._clock.now()
        entry = {
            "fault": kind,
            "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "day": round((now - self._start) / dt.timedelta(days=1), 3),
            "detail": detail,
        }
        with self._lock:
            self.injected.append(entry)
        log.warning("fault injected", extra=entry)

    def count(self) -> int:
        with self._lock:
            return len(self.injected)

    def run(self, stopping: threading.Event) -> None:
        for planned in self._plan:
            wait = self._clock.real_seconds((planned.at - self._clock.now()).total_seconds())
            if stopping.wait(max(wait, 0.0)):
                return
            self.note(planned.kind, self._inject(planned.kind))

    def _inject(self, kind: str) -> str:
        if kind == "kill-workers":
            pool = self._random.choice(self._service.pools())
            self._service.restart(pool)
            return f"SIGKILL to the group of {pool.label} (pid {pool.process.pid}); restarted"
        if kind == "redis-restart":
            started = time.monotonic()
            self._servers.restart_redis(REDIS_DOWN_S)
            return f"Redis stopped and started again in {time.monotonic() - started:.1f} s"
        started = time.monotonic()
        self._servers.restart_postgres(POSTGRES_DOWN_S)
        return f"PostgreSQL stopped and started again in {time.monotonic() - started:.1f} s"
