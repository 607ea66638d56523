"""A group of child processes: start each in a process group of its own, relay its output
line by line with a label, and stop them all (SIGTERM, a grace period, then SIGKILL).

Nothing here knows which processes they are; `scheduled_images.up` wires this service's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

log = logging.getLogger("scheduled_images.up")


@dataclasses.dataclass
class Child:
    label: str
    process: subprocess.Popen
    reader: threading.Thread
    argv: list[str]
    env: dict[str, str]


class ProcessGroup:
    """Child processes, each the leader of its own process group, with labelled output."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.children: list[Child] = []

    def echo(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def start(self, label: str, argv: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own group: a terminal's Ctrl-C reaches only `up`, which stops the children
            # in order, and a signal to the group reaches a pool's forked children too.
            start_new_session=True,
        )
        reader = threading.Thread(target=self._relay, args=(label, process), daemon=True)
        reader.start()
        child = Child(label, process, reader, argv, env)
        self.children.append(child)
        return child

    def restart(self, child: Child) -> Child:
        """Start the child again as it was started, in its place; its old process must have
        ended (or be about to: its group gets a SIGKILL)."""
        signal_group(child.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(10)
        self.children.remove(child)
        return self.start(child.label, child.argv, child.env)

    def _relay(self, label: str, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self.echo(f"[{label}] {raw.decode(errors='replace').rstrip()}")

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self, timeout: float) -> None:
        """SIGTERM every group, wait, then SIGKILL whatever is left of any group."""
        for child in self.children:
            signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time; killing it", extra={"process": child.label})
        # Also sweeps a pool's children whose parent has already gone.
        for child in self.children:
            signal_group(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
            child.reader.join(2)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class StopSignals:
    """SIGINT and SIGTERM set an event instead of raising, so shutdown runs in one place."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Callable | int | None] = {}

    def __enter__(self) -> threading.Event:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self.event

    def _handle(self, signum: int, _frame: object) -> None:
        self.event.set()

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
