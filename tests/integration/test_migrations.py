"""The migrations on PostgreSQL: they build the schema the models describe, and 0006 leaves
one open run-now per server where a race had made several."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from common import migrate
from common.models import Base
from tests.support.databases import create, drop


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    url = create(pg_admin_url, "si_migration")
    yield url
    drop(pg_admin_url, url)


def test_the_migrations_build_the_schema_the_models_describe(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = sa.create_engine(empty_database)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def _insert_run(connection: sa.Connection, server: str, state: str) -> int:
    return connection.execute(
        sa.text(
            "INSERT INTO runs (tenant_id, server_id, trigger, period, weekly, scheduled_for,"
            " state, attempts, created_at, not_before, start_by) VALUES ('t', :server,"
            " 'manual', '2026-12-01', false, now(), :state, 0, now(), now(), now()) RETURNING id"
        ),
        {"server": server, "state": state},
    ).scalar_one()


def test_0006_keeps_the_run_now_furthest_along_and_cancels_the_rest(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0005")
    engine = sa.create_engine(empty_database)
    try:
        with engine.begin() as connection:
            waiting_first = _insert_run(connection, "s1", "pending")
            in_flight = _insert_run(connection, "s1", "saving")
            waiting_later = _insert_run(connection, "s1", "pending")
            older = _insert_run(connection, "s2", "pending")
            newer = _insert_run(connection, "s2", "pending")
            ended = _insert_run(connection, "s3", "done")
            alone = _insert_run(connection, "s3", "pending")
        migrate.upgrade(empty_database, "0006")
        with engine.connect() as connection:
            states = dict(connection.execute(sa.text("SELECT id, state FROM runs")).all())
        assert states == {
            waiting_first: "cancelled",
            in_flight: "saving",
            waiting_later: "cancelled",
            older: "pending",
            newer: "cancelled",
            ended: "done",
            alone: "pending",
        }
        with engine.begin() as connection, pytest.raises(sa.exc.IntegrityError):
            _insert_run(connection, "s2", "pending")
        migrate.downgrade(empty_database, "0005")
        with engine.connect() as connection:
            indexes = {index["name"] for index in sa.inspect(connection).get_indexes("runs")}
        assert "uq_runs_server_open_manual" not in indexes
    finally:
        engine.dispose()
