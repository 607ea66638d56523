"""The one way to reach the database: engine and session factory, and the outage error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy import exc, orm


def make_engine(url: str, **kwargs: object) -> sa.Engine:
    # pool_pre_ping lets every process ride out a database restart: a dead pooled
    # connection is replaced on checkout instead of failing the first request after it.
    options: dict[str, object] = {"pool_pre_ping": True}
    if "poolclass" not in kwargs:
        options.update(pool_size=5, max_overflow=10)
    options.update(kwargs)
    connect_args = {"connect_timeout": 5, "application_name": "scheduled-images"}
    return sa.create_engine(url, connect_args=connect_args, **options)


def make_session_factory(engine: sa.Engine) -> orm.sessionmaker[orm.Session]:
    return orm.sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: orm.sessionmaker[orm.Session]) -> Iterator[orm.Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def is_outage(error: BaseException) -> bool:
    """True when the database could not be reached, as opposed to a bad statement."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, exc.OperationalError)
    return isinstance(error, exc.TimeoutError | exc.DisconnectionError)
