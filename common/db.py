"""The one way to reach the database: engine and session factory, and the outage error."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc, orm

T = TypeVar("T")
# One read engine per write engine, so that apps built on one engine (the tests make many)
# share one pool of read connections instead of each opening its own.
_READ_ENGINES: weakref.WeakKeyDictionary[sa.Engine, sa.Engine] = weakref.WeakKeyDictionary()


def make_engine(url: str | sa.URL, **kwargs: object) -> sa.Engine:
    # pool_pre_ping lets every process ride out a database restart: a dead pooled
    # connection is replaced on checkout instead of failing the first request after it.
    # hide_parameters: a statement's error (logged with its traceback) must not carry the values
    # bound into it, among them webhook secrets and tokens.
    options: dict[str, object] = {"pool_pre_ping": True, "hide_parameters": True}
    if "poolclass" not in kwargs:
        options.update(pool_size=5, max_overflow=10)
    if sa.make_url(url).get_driver_name() == "psycopg2":
        # The ORM saves the runs of a batch (a create message's, a poll's) as one UPDATE
        # executed for many rows: in pages, one round trip a page, not one a row.
        options["executemany_mode"] = "values_plus_batch"
    options.update(kwargs)
    connect_args = {"connect_timeout": 5, "application_name": "scheduled-images"}
    return sa.create_engine(url, connect_args=connect_args, **options)


def make_session_factory(engine: sa.Engine) -> orm.sessionmaker[orm.Session]:
    return orm.sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(
    factory: orm.sessionmaker[orm.Session],
) -> orm.sessionmaker[orm.Session]:
    """Sessions of `factory`'s database for reads of one statement: use them through `read`.

    A single SELECT sees committed data with or without a transaction, so these sessions run
    in autocommit: no BEGIN before and no ROLLBACK after, one round trip instead of three.
    They have their own pool without pre-ping (a fourth round trip): `read` retries instead.
    `write_row` uses the same engine for a write that is one statement, whole by itself.
    """
    engine = factory.kw["bind"]
    reader = _READ_ENGINES.get(engine)
    if reader is None:
        reader = make_engine(engine.url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
        _READ_ENGINES[engine] = reader
        # Whoever closes the engine's connections means its read connections too.
        sa.event.listen(engine, "engine_disposed", lambda _: reader.dispose())
    return make_session_factory(reader)


def read(factory: orm.sessionmaker[orm.Session], work: Callable[[orm.Session], T]) -> T:
    """`work(session)`, once more on a fresh connection if the pooled one had died.

    A database restart kills every pooled connection; the first use of one fails, and
    SQLAlchemy then invalidates the whole pool, so the second try connects anew. A read can
    be repeated safely, which is what lets the read pool do without pre-ping.
    """

    def once() -> T:
        with factory() as session:
            return work(session)

    return _once_more_if_invalidated(once)


def read_row(
    factory: orm.sessionmaker[orm.Session], statement: sa.Executable, params: dict[str, Any]
) -> sa.Row | None:
    """The first row of one Core statement, read as `read` reads but on a bare connection of
    the factory's engine: no Session to build and close, for the hottest reads."""
    return _first_row(factory, statement, params, commit=False)


def write_row(
    factory: orm.sessionmaker[orm.Session], statement: sa.Executable, params: dict[str, Any]
) -> sa.Row | None:
    """The first row of one Core statement that writes, committed alone on a connection of
    the factory's engine, which `make_read_session_factory` makes autocommit: one round trip,
    where a transaction costs four (pre-ping, BEGIN, the statement, COMMIT).

    Only for a statement that is whole by itself and leaves the same rows when run twice (an
    upsert of given values): a connection found dead is tried again, as a read is, and the
    first try may have committed before the connection died.
    """
    return _first_row(factory, statement, params, commit=True)


def _first_row(
    factory: orm.sessionmaker[orm.Session],
    statement: sa.Executable,
    params: dict[str, Any],
    commit: bool,
) -> sa.Row | None:
    engine = factory.kw["bind"]

    def once() -> sa.Row | None:
        with engine.connect() as connection:
            row = connection.execute(statement, params).first()
            # Sends nothing in autocommit; on any other engine, the write is not rolled back.
            if commit:
                connection.commit()
            return row

    return _once_more_if_invalidated(once)


def _once_more_if_invalidated(work: Callable[[], T]) -> T:
    try:
        return work()
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return work()


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


def delete_batch(
    session: orm.Session, model: Any, *where: sa.ColumnElement[bool], limit: int
) -> int:
    """Delete at most `limit` rows of `model` (keyed by `id`) that match `where`: a bounded
    batch, so that a periodic clean-up never holds one long delete."""
    victims = sa.select(model.id).where(*where).limit(limit).scalar_subquery()
    return session.execute(sa.delete(model).where(model.id.in_(victims))).rowcount
