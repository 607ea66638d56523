"""Reads through `common.db.read` and `read_row`, and the writes of `write_row`: autocommit
sessions on a pool without pre-ping, retried once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc, orm

from common import db, schedules
from common.clock import utcnow
from common.db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
    read,
    read_row,
    transaction,
    write_row,
)


@pytest.fixture
def reads(sessions: orm.sessionmaker[orm.Session]) -> orm.sessionmaker[orm.Session]:
    return make_read_session_factory(sessions)


def _backend_state(engine: sa.Engine, pid: int) -> str:
    with engine.connect() as other:
        return other.scalar(
            sa.text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )


def _restart_connections(engine: sa.Engine) -> None:
    """Every other connection to the database ends, as when PostgreSQL restarts: each pooled
    one is dead the next time it is used, whichever the pool hands out."""
    with engine.connect() as other:
        other.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        other.commit()


def _store(sessions: orm.sessionmaker[orm.Session], server_id: str, retention: int) -> None:
    with transaction(sessions) as session:
        schedules.upsert(
            session,
            tenant_id="tenant-a",
            server_id=server_id,
            server_name="web",
            retention=retention,
            day_of_week=None,
            slot_s=600,
            default_duration_s=600.0,
            now=utcnow(),
        )


def test_a_read_holds_no_transaction_open(sessions, reads, engine) -> None:  # type: ignore[no-untyped-def]
    with reads() as session:
        pid = session.scalar(sa.text("SELECT pg_backend_pid()"))
        # A transactional session would leave its backend "idle in transaction" here.
        assert _backend_state(engine, pid) == "idle"
    with sessions() as session:
        pid = session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert _backend_state(engine, pid) == "idle in transaction"


def test_a_read_sees_every_committed_write(sessions, reads) -> None:  # type: ignore[no-untyped-def]
    for retention in (3, 9, 4):
        _store(sessions, "srv-1", retention)
        row = read(reads, lambda s: schedules.find(s, "tenant-a", "srv-1"))
        assert row is not None and row.retention == retention


def test_one_pool_of_read_connections_per_engine(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = make_read_session_factory(sessions), make_read_session_factory(sessions)
    assert first.kw["bind"] is second.kw["bind"]


def test_a_read_on_a_dead_pooled_connection_is_retried_once(sessions, reads, engine) -> None:  # type: ignore[no-untyped-def]
    """As after a database restart: the pooled connection is gone, the caller sees nothing."""
    _store(sessions, "srv-1", 5)
    dead = read(reads, lambda s: s.scalar(sa.text("SELECT pg_backend_pid()")))
    _restart_connections(engine)
    calls = []

    def find(session: orm.Session) -> tuple[int, int]:
        calls.append(1)
        row = schedules.find(session, "tenant-a", "srv-1")
        assert row is not None
        return session.scalar(sa.text("SELECT pg_backend_pid()")), row.retention

    pid, retention = read(reads, find)
    assert (len(calls), retention) == (2, 5)
    assert pid != dead


def test_a_failing_statement_is_not_retried(reads) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def broken(session: orm.Session) -> None:
        calls.append(1)
        session.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(exc.ProgrammingError):
        read(reads, broken)
    assert len(calls) == 1


def test_disposing_the_engine_closes_the_read_connections(database_url) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    reads = make_read_session_factory(make_session_factory(engine))
    read(reads, lambda s: s.scalar(sa.text("SELECT 1")))
    assert reads.kw["bind"].pool.checkedin() == 1
    engine.dispose()
    assert reads.kw["bind"].pool.checkedin() == 0


def test_read_row_reads_without_a_transaction_and_retries_a_dead_connection(
    sessions, reads, engine
) -> None:  # type: ignore[no-untyped-def]
    _store(sessions, "srv-1", 5)
    # One pooled connection, the one the first read uses: the second gets that one back dead.
    reads.kw["bind"].dispose()
    pid_of = sa.text("SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS alone")
    first = read_row(reads, pid_of, {})
    # No transaction around it: a statement's own start is its transaction's start.
    assert first is not None and first.alone
    _restart_connections(engine)
    failures = []

    def failed(context: sa.engine.ExceptionContext) -> None:
        failures.append(context.is_disconnect)

    sa.event.listen(reads.kw["bind"], "handle_error", failed)
    try:
        again = read_row(reads, pid_of, {})
    finally:
        sa.event.remove(reads.kw["bind"], "handle_error", failed)
    assert again is not None and again.pid != first.pid
    assert failures == [True]  # the dead connection failed once, not the caller's problem
    view = schedules.read_view(reads, "tenant-a", "srv-1", utcnow())
    assert view is not None and view.retention == 5 and view.day_of_week is None
    assert schedules.read_view(reads, "tenant-b", "srv-1", utcnow()) is None


# -- dead connections, one-statement writes ---------------------------------------


def test_a_plain_select_survives_dead_pooled_connections(sessions, reads, engine) -> None:  # type: ignore[no-untyped-def]
    _store(sessions, "srv-1", 5)
    params = {"server_id": "srv-1", "tenant_id": "tenant-a"}
    # Several pooled connections, all of them about to die.
    held = [reads.kw["bind"].connect() for _ in range(3)]
    for connection in held:
        connection.close()
    assert read_row(reads, schedules._FIND_PLACED, params).slot_s == 600
    _restart_connections(engine)
    assert read_row(reads, schedules._FIND_PLACED, params).slot_s == 600
    assert read_row(reads, schedules._FIND_PLACED, params).slot_s == 600


def test_a_plain_select_without_a_database_raises_the_outage_error() -> None:
    # Port 9 (discard): nothing listens there, so every connection is refused at once.
    engine = make_engine("postgresql+psycopg2://postgres@127.0.0.1:9/none")
    reads = make_read_session_factory(make_session_factory(engine))
    try:
        with pytest.raises(exc.OperationalError) as raised:
            read_row(reads, schedules._FIND_VIEW, {"server_id": "s", "tenant_id": "t"})
        assert db.is_outage(raised.value)
    finally:
        engine.dispose()


def test_write_row_commits_alone_on_either_engine(sessions, reads, engine) -> None:  # type: ignore[no-untyped-def]
    statement = sa.text(
        "INSERT INTO service_settings (name, value) VALUES (:n, '1') RETURNING name"
    )
    for n, factory in enumerate((reads, sessions)):
        assert write_row(factory, statement, {"n": f"probe-{n}"}).name == f"probe-{n}"
    with engine.connect() as other:
        names = other.scalars(sa.text("SELECT name FROM service_settings ORDER BY name")).all()
    assert names == ["probe-0", "probe-1"]


def test_store_never_takes_over_another_tenants_server(sessions, reads) -> None:  # type: ignore[no-untyped-def]
    _store(sessions, "srv-1", 5)
    stored = dict(
        server_id="srv-1",
        server_name="web",
        retention=9,
        day_of_week=2,
        slot_s=2 * 86400 + 3600,
        default_duration_s=600.0,
        now=utcnow(),
    )
    assert schedules.store(reads, tenant_id="tenant-b", **stored) is None
    kept = schedules.read_view(reads, "tenant-a", "srv-1", utcnow())
    assert kept is not None and (kept.retention, kept.day_of_week) == (5, None)
    view = schedules.store(reads, tenant_id="tenant-a", **stored)
    assert view is not None and (view.retention, view.day_of_week, view.paused) == (9, 2, False)
    assert schedules.read_view(reads, "tenant-a", "srv-1", utcnow()) == view
