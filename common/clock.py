"""The one clock every component reads: the API, the tick, leases, polls, retries, time-outs,
the planner's "now" and the simulated cloud's image progress.

At speed 1 it is the wall clock. At another speed (only beside the simulated cloud, for a
soak) `speed` simulated seconds pass per real second from `real_start`, when it read
`start`; that instant is kept in the database (`common.clock_store`) so that every process
on every host reads the same time. Intervals that are real waits (beat's period, broker and
HTTP time-outs, Celery's retry countdowns) are not read through it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt


def utcnow() -> dt.datetime:
    """The wall clock."""
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Clock:
    speed: float = 1.0
    real_start: dt.datetime | None = None
    start: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"a clock's speed must be above 0, not {self.speed}")
        if self.speed != 1 and (self.real_start is None or self.start is None):
            raise ValueError("a clock at another speed than 1 needs the instant it started")

    def now(self) -> dt.datetime:
        real = utcnow()
        if self.real_start is None or self.start is None:
            return real
        return self.start + (real - self.real_start) * self.speed

    def __call__(self) -> dt.datetime:
        return self.now()

    def real_seconds(self, simulated_s: float) -> float:
        """How long a real wait lasts for that many simulated seconds."""
        return simulated_s / self.speed


def iso_z(moment: dt.datetime) -> str:
    """The API's time format: UTC, seconds, with a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_z_or_none(moment: dt.datetime | None) -> str | None:
    """`iso_z`, for a moment that may not have come yet (a run not started)."""
    return None if moment is None else iso_z(moment)
