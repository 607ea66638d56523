"""What a long planning command shows while it works: its stages, and a bar while placing."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click

from scheduler.planning import QuietObserver


class PlanningReport(QuietObserver):
    """An observer of a rebalance that shows on stderr each stage as it starts, with the seconds
    so far (near the bound most of the time goes after the placing), and, if `bar`, a bar while
    the schedules are placed."""

    def __init__(self, bar: bool = False) -> None:
        self._show_bar = bar
        self._started = time.monotonic()
        self._open = contextlib.ExitStack()
        self._bar: Any = None
        self._shown = 0

    def stage(self, what: str) -> None:
        self.close()
        click.echo(f"{time.monotonic() - self._started:5.1f} s  {what}", err=True)

    def progress(self, done: int, total: int) -> None:
        if not self._show_bar:
            return
        if self._bar is None:
            bar = click.progressbar(length=total, label="placing", file=sys.stderr)
            self._bar = self._open.enter_context(bar)
            self._shown = 0
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        self._open.close()
        self._bar = None
