"""What a task reaches: settings, sessions, the cloud and the clock, built once per process.

Built lazily and rebuilt after a fork, so that no database connection is shared between a
prefork parent and its children.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable

from sqlalchemy import orm

from common.clock import Clock
from common.clock_store import SharedClock
from common.compute import make_driver
from common.compute.base import ComputeDriver
from common.db import make_engine, make_session_factory
from common.settings import Settings


@dataclasses.dataclass
class Runtime:
    settings: Settings
    sessions: orm.sessionmaker[orm.Session]
    compute: ComputeDriver
    clock: Callable[[], dt.datetime] = Clock()


_settings: Settings | None = None
_runtime: tuple[int, Runtime] | None = None


def configure(settings: Settings) -> None:
    global _settings, _runtime
    _settings, _runtime = settings, None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        settings = _settings or Settings.from_env()
        # No pre-ping: every task retries on a dropped connection (DB_RETRY), and a
        # disconnect invalidates the whole pool, so a ping round trip per checkout buys nothing.
        engine = make_engine(settings.database_url, pool_size=2, pool_pre_ping=False)
        sessions = make_session_factory(engine)
        clock = SharedClock(sessions, settings.clock_speed)
        compute = make_driver(settings, sessions, clock)
        _runtime = (os.getpid(), Runtime(settings, sessions, compute, clock))
    return _runtime[1]
