"""The service's clock kept in the database, so that every process reads the same time."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert

from common.clock import Clock, utcnow
from common.db import transaction
from common.models import ClockEpoch
from common.settings import SettingsError


def shared_clock(
    sessions: orm.sessionmaker[orm.Session], speed: float, start: dt.datetime | None = None
) -> Clock:
    """The database's clock, made at `speed` (reading `start`, default now) by the first
    process that asks; a process asking for another speed than the stored one is refused.

    The wall clock needs no row: at speed 1 with none stored, nothing is written.
    """
    with transaction(sessions) as session:
        row = session.get(ClockEpoch, 1)
        if row is None and (speed != 1 or start is not None):
            real = utcnow()
            session.execute(
                insert(ClockEpoch)
                .values(id=1, speed=speed, real_start=real, start=start or real)
                .on_conflict_do_nothing(index_elements=[ClockEpoch.id])
            )
            row = session.get(ClockEpoch, 1, populate_existing=True)
        if row is None:
            return Clock()
        if row.speed != speed:
            raise SettingsError(
                f"CLOCK_SPEED is {speed:g} but this database's clock runs at {row.speed:g}: "
                "every process of one service must use the same speed"
            )
        return Clock(row.speed, row.real_start, row.start)


def forget_clock(session: orm.Session) -> None:
    """Remove the stored clock (a soak's database reused, or a test that made one)."""
    session.execute(sa.delete(ClockEpoch))


class SharedClock:
    """`shared_clock`, read on first use: a process may start before its database answers."""

    def __init__(self, sessions: orm.sessionmaker[orm.Session], speed: float) -> None:
        self._sessions = sessions
        self.speed = speed
        self._clock: Clock | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> Clock:
        if self._clock is None:
            with self._lock:
                if self._clock is None:
                    self._clock = shared_clock(self._sessions, self.speed)
        return self._clock

    def now(self) -> dt.datetime:
        return self._loaded().now()

    def __call__(self) -> dt.datetime:
        return self.now()

    def real_seconds(self, simulated_s: float) -> float:
        return simulated_s / self.speed
