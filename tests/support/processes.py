"""Real service processes for end-to-end tests: a Redis server of the test's own, and the
`scheduled-images` worker and beat, each in its own process group so a test can kill it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common.embedded import RedisServer, free_port, free_ports, redis_executable

__all__ = ["BIN", "RedisServer", "ServiceProcess", "free_port", "free_ports", "redis_executable"]

BIN = Path(sys.executable).parent


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
