"""The PostgreSQL and Redis a soak runs on: those DATABASE_URL and BROKER_URL name, or servers
of the soak's own in a folder of its own, which it may restart."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from common import migrate
from common.db import make_engine
from common.embedded import OwnPostgres, RedisServer
from common.models import Schedule


class SoakError(Exception):
    """The soak cannot run as asked; the message says why."""


@dataclasses.dataclass
class Servers:
    database_url: str
    broker_url: str
    #: The soak's own servers, None where the settings named one.
    postgres: OwnPostgres | None
    redis: RedisServer | None
    state_dir: Path

    def restart_postgres(self, down_s: float) -> None:
        if self.postgres is None:
            raise SoakError("postgres-restart needs a PostgreSQL of the soak's own")
        self.postgres.stop()
        time.sleep(down_s)
        self.postgres.start()

    def restart_redis(self, down_s: float) -> None:
        if self.redis is None:
            raise SoakError("redis-restart needs a Redis of the soak's own")
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def refuse_restarts(database_url: str, broker_url: str, faults: frozenset[str]) -> None:
    """A server the soak did not start is someone else's: it never restarts one."""
    if database_url and "postgres-restart" in faults:
        raise SoakError(
            "postgres-restart restarts a PostgreSQL of the soak's own: unset DATABASE_URL, or "
            "leave that fault out"
        )
    if broker_url and "redis-restart" in faults:
        raise SoakError(
            "redis-restart restarts a Redis of the soak's own: unset BROKER_URL, or leave that "
            "fault out"
        )


def start_servers(database_url: str, broker_url: str) -> Servers:
    """The servers to soak on, the database migrated and holding no schedule."""
    # Not under a test's temporary root: as root, the server runs as a user of its own, which
    # must keep reaching its data.
    state_dir = Path(tempfile.mkdtemp(prefix="si-soak-"))
    postgres = redis = None
    try:
        if not database_url:
            postgres = OwnPostgres(state_dir)
            database_url = postgres.url
        if not broker_url:
            redis = RedisServer(state_dir / "redis")
            redis.start()
            broker_url = redis.url
        migrate.upgrade(database_url)
        refuse_used(database_url)
    except BaseException:
        Servers(database_url, broker_url, postgres, redis, state_dir).close()
        raise
    return Servers(database_url, broker_url, postgres, redis, state_dir)


def refuse_used(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            held = connection.scalar(sa.select(sa.func.count()).select_from(Schedule))
    finally:
        engine.dispose()
    if held:
        raise SoakError(
            f"the database at DATABASE_URL already holds {held} schedules: a soak needs a fresh "
            "database it can fill and judge (create an empty one, or unset DATABASE_URL)"
        )
