"""Migration 0005 on PostgreSQL: runs ended before it get the reason code their error text
stood for, so the failure metrics over the kept history read as they did; and it goes back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from common import migrate
from tests.support.databases import create, drop

# (state, error) of a run ended before the reason column, and the code it gets.
KEPT_HISTORY = [
    ("failed", "create failed: boom (attempt 3 of 3)", "create_error"),
    ("failed", "the image ended in ERROR (attempt 3 of 3)", "image_error"),
    ("failed", "the image disappeared (attempt 3 of 3)", "image_missing"),
    ("timed_out", "timed out: the image did not finish before the run's deadline", "timeout"),
    ("cancelled", "the server no longer exists", "server_gone"),
    ("cancelled", None, "cancelled"),
    ("skipped", "waiting: the server is busy with another image", "busy"),
    ("skipped", None, "missed_window"),
    ("failed", None, None),
    ("pending", "waiting: the server is busy with another image (409)", "busy"),
    ("done", "the image ended in ERROR (attempt 1); retrying", None),
]


@pytest.fixture
def database_at_0004(pg_admin_url: str) -> Iterator[str]:
    url = create(pg_admin_url, "si_migration")
    migrate.upgrade(url, "0004")
    yield url
    drop(pg_admin_url, url)


def test_kept_runs_get_the_reason_their_error_stood_for(database_at_0004: str) -> None:
    engine = sa.create_engine(database_at_0004)
    try:
        with engine.begin() as connection:
            for index, (state, error, _) in enumerate(KEPT_HISTORY):
                connection.execute(
                    sa.text(
                        "INSERT INTO runs (tenant_id, server_id, trigger, period, weekly,"
                        " scheduled_for, state, attempts, error, created_at, not_before,"
                        " start_by) VALUES ('t', :server, 'manual', '2026-11-01', false, now(),"
                        " :state, 1, :error, now(), now(), now())"
                    ),
                    {"server": f"s{index}", "state": state, "error": error},
                )
        migrate.upgrade(database_at_0004)
        with engine.connect() as connection:
            reasons = connection.execute(sa.text("SELECT reason FROM runs ORDER BY id")).scalars()
            assert list(reasons) == [reason for _, _, reason in KEPT_HISTORY]
        migrate.downgrade(database_at_0004, "0004")
        with engine.connect() as connection:
            columns = sa.inspect(connection).get_columns("runs")
            assert "reason" not in {column["name"] for column in columns}
    finally:
        engine.dispose()
