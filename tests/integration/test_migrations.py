"""The migrations on PostgreSQL: they build the schema the models describe, 0006 leaves
one open run-now per server where a race had made several, and 0007 gives each schedule the
last success its kept runs show; 0011 sets the busy tables' storage."""

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


def test_0011_leaves_room_in_the_busy_tables_and_vacuums_them_sooner(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database)
    engine = sa.create_engine(empty_database)
    try:
        with engine.connect() as connection:
            options = dict(
                connection.execute(
                    sa.text(
                        "SELECT relname, reloptions FROM pg_class"
                        " WHERE relname IN ('schedules', 'runs', 'sim_images')"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    busy = ["fillfactor=80", "autovacuum_vacuum_scale_factor=0.02"]
    assert options == {"schedules": busy, "runs": busy, "sim_images": None}


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


def _insert_schedule(connection: sa.Connection, server: str) -> int:
    return connection.execute(
        sa.text(
            "INSERT INTO schedules (tenant_id, server_id, server_name, retention, slot_s,"
            " next_run_at, expected_duration_s, created_at, updated_at) VALUES ('t', :server,"
            " :server, 2, 3600, now(), 60, now(), now()) RETURNING id"
        ),
        {"server": server},
    ).scalar_one()


def _end_run(connection: sa.Connection, run_id: int, schedule_id: int, finished: str) -> None:
    connection.execute(
        sa.text("UPDATE runs SET schedule_id = :schedule, finished_at = :at WHERE id = :id"),
        {"schedule": schedule_id, "at": finished, "id": run_id},
    )


def test_0008_backfills_each_schedules_newest_done_run(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0007")
    engine = sa.create_engine(empty_database)
    try:
        with engine.begin() as connection:
            imaged, failing, new = (_insert_schedule(connection, s) for s in ("s1", "s2", "s3"))
            older = _insert_run(connection, "s1", "done")
            newer = _insert_run(connection, "s1", "done")
            failed_later = _insert_run(connection, "s1", "failed")
            failed = _insert_run(connection, "s2", "failed")
            _end_run(connection, older, imaged, "2026-11-20T03:00:00Z")
            _end_run(connection, newer, imaged, "2026-11-22T03:00:00Z")
            _end_run(connection, failed_later, imaged, "2026-11-23T03:00:00Z")
            _end_run(connection, failed, failing, "2026-11-23T03:00:00Z")
        migrate.upgrade(empty_database, "0008")
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, last_success_at, paused_at FROM schedules")
            ).all()
        last = {row.id: row.last_success_at for row in rows}
        assert last[imaged].isoformat() == "2026-11-22T03:00:00+00:00"
        assert last[failing] is None and last[new] is None
        assert all(row.paused_at is None for row in rows)

        migrate.downgrade(empty_database, "0007")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("schedules")}
            indexes = {i["name"] for i in sa.inspect(connection).get_indexes("schedules")}
        assert not {"last_success_at", "paused_at"} & columns
        assert "ix_schedules_next_run_at" in indexes
    finally:
        engine.dispose()
