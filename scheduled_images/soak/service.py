"""The service under soak: the processes `up` starts (Flower apart), on the soak's servers and
clock, with their output in a log file."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import IO

from celery import Celery

from common.settings import Settings
from scheduled_images.process_group import Child, ProcessGroup
from scheduled_images.up import POOLS, child_env, start_api, start_back_end, wait_for_api

HOST = "127.0.0.1"
#: Real seconds the worker pools may take to start answering.
POOLS_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
#: Real seconds between ticks: the tick's granularity is this times the speed, simulated.
TICK_INTERVAL_S = 0.1
#: Real seconds a create may go unseen before the tick publishes it again: the lease is in
#: simulated seconds, and must outlast a create's real latency at any speed.
LEASE_REAL_S = 2.5
#: Real seconds a run may stay in flight before it times out, at the least: a killed pool's
#: lease, a restarted Redis and a loaded machine must fit in it at any speed.
RUN_TIMEOUT_REAL_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def soak_environment(speed: float, days: float, seed: int, compute_errors: bool) -> dict[str, str]:
    """Settings of every process under soak (simulated seconds unless named real)."""
    env = {
        "CLOCK_SPEED": f"{speed:g}",
        "COMPUTE_DRIVER": "simulated",
        "AUTH_BACKEND": "static",
        "SIM_SECONDS_PER_GB": "10",
        "SIM_DURATION_SIGMA": "0.25",
        "SIM_SEED": str(seed),
        "TICK_INTERVAL_S": f"{TICK_INTERVAL_S:g}",
        "LEASE_S": f"{max(60.0, LEASE_REAL_S * speed):g}",
        "RETRY_DELAY_S": "600",
        "RUN_TIMEOUT_S": str(int(max(21600, RUN_TIMEOUT_REAL_S * speed))),
        # Every run of the soak stays to be judged at its end.
        "RUN_HISTORY_DAYS": str(int(days) + 8),
        # The fleet is enabled through the API as fast as it answers.
        "TENANT_WRITE_LIMIT": "1000000 per minute",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
    }
    if compute_errors:
        env.update(SIM_CREATE_ERROR_RATE="0.01", SIM_IMAGE_ERROR_RATE="0.005")
    return env


class Service:
    """The soak's children: the API first (the fleet is enabled through it), then the rest."""

    def __init__(self, settings: Settings, extra_env: dict[str, str], log: IO[str]) -> None:
        self._settings = settings
        self._env = {**child_env(settings), **extra_env}
        self._group = ProcessGroup(log)
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self._lock = threading.Lock()

    @property
    def state_dir(self) -> Path:
        return self._settings.state_dir

    def start_api(self, stopping: threading.Event) -> None:
        api = start_api(self._group, self._env, self.state_dir, HOST, self.port)
        if not wait_for_api(self.base, api, stopping):
            raise RuntimeError(f"the API did not answer at {self.base}/healthz")

    def start_back_end(self, stopping: threading.Event) -> None:
        """Beat and the pools; returns once every pool answers a ping."""
        start_back_end(self._group, self._env, self.state_dir, HOST, None)
        probe = Celery("soak-probe", broker=self._settings.broker_url)
        wanted = {queue for queue, _ in POOLS}
        deadline = time.monotonic() + POOLS_START_TIMEOUT_S
        try:
            while not stopping.is_set():
                replies = probe.control.ping(timeout=1.0) or []
                answered = {name.split("@")[0] for reply in replies for name in reply}
                if wanted <= answered:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pools not answering: {sorted(wanted - answered)}")
        finally:
            probe.close()

    def pools(self) -> list[Child]:
        with self._lock:
            return [c for c in self._group.children if c.label.startswith("worker:")]

    def restart(self, child: Child) -> None:
        with self._lock:
            self._group.restart(child)

    def restart_exited(self) -> Child | None:
        """A child that exited by itself, started again; None when all are running."""
        with self._lock:
            gone = self._group.exited()
            if gone is not None:
                self._group.restart(gone)
            return gone

    def stop(self) -> None:
        self._group.stop_all(STOP_TIMEOUT_S)
