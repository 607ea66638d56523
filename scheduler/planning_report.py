"""What a long planning command shows while it works: its stages, and a bar while placing."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click


class PlanningReport:
    """What a command shows on stderr while it plans: each stage as it starts, with the seconds
    so far (near the bound most of the time goes after the placing), and, given the fleet's
    size, a bar while its schedules are placed."""

    def __init__(self, bar_size: int | None = None) -> None:
        self._size = bar_size
        self._started = time.monotonic()
        self._open = contextlib.ExitStack()
        self._bar: Any = None

    def stage(self, what: str) -> None:
        self.close()
        click.echo(f"{time.monotonic() - self._started:5.1f} s  {what}", err=True)

    def placed(self, count: int) -> None:
        if self._size is None:
            return
        if self._bar is None:
            bar = click.progressbar(length=self._size, label="placing", file=sys.stderr)
            self._bar = self._open.enter_context(bar)
        self._bar.update(count)

    def close(self) -> None:
        self._open.close()
        self._bar = None
