"""The API while its PostgreSQL goes away and comes back: 503 with Retry-After, then recovery.

The test runs a PostgreSQL of its own (embedded, in a temporary folder), because stopping the
shared one would break everybody else's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from api import create_app
from api.auth import add_token
from common import migrate
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.settings import Settings
from tests.conftest import Client, ServedApp
from tests.support.postgres import OwnPostgres


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path / "state")
    try:
        migrate.upgrade(server.url)
        yield server
    finally:
        server.close()


@pytest.fixture
def engine(postgres: OwnPostgres) -> Iterator[sa.Engine]:
    engine = make_engine(postgres.url)
    yield engine
    engine.dispose()


@pytest.fixture
def alice(postgres: OwnPostgres, engine: sa.Engine, tmp_path: Path) -> Iterator[Client]:
    settings = Settings.from_env(
        {
            "DATABASE_URL": postgres.url,
            "STATE_DIR": str(tmp_path / "state"),
            "AUTH_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "LOG_FORMAT": "text",
        }
    )
    add_token(settings.auth_tokens_file, "alice", "tenant-a", ["creator"])
    served = ServedApp(create_app(settings, sessions=make_session_factory(engine)))
    yield Client(served.base, "alice", "tenant-a")
    served.stop()


def _assert_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.json()
    assert set(body) == {"serviceUnavailable"}
    assert body["serviceUnavailable"]["code"] == 503
    assert body["serviceUnavailable"]["message"]


def test_database_outage_and_recovery(postgres, engine, alice) -> None:  # type: ignore[no-untyped-def]
    server = SimulatedDriver(make_session_factory(engine)).add_servers("tenant-a", 1)[0]
    stored = alice.post_schedule(server, {"image_schedule": {"retention": 3}})
    assert stored.status_code == 200, stored.text

    postgres.stop()

    _assert_unavailable(alice.get_schedule(server))
    _assert_unavailable(
        alice.post_schedule(server, {"image_schedule": {"retention": 9, "day_of_week": "MONDAY"}})
    )
    _assert_unavailable(alice.delete_schedule(server))
    _assert_unavailable(alice.request("GET", alice.url("/v2/tenant-a/rax-si-image-schedules")))
    not_ready = alice.as_token(None).request("GET", alice.url("/readyz"))
    assert not_ready.status_code == 503
    assert "Retry-After" in not_ready.headers
    assert alice.as_token(None).request("GET", alice.url("/healthz")).status_code == 200

    postgres.start()

    # The same app, not restarted: its pool replaces the dead connections on the first try.
    again = alice.get_schedule(server)
    assert again.status_code == 200, again.text
    # The POST answered 503 changed nothing, and neither did the DELETE.
    assert again.json() == stored.json()
    assert alice.as_token(None).request("GET", alice.url("/readyz")).status_code == 200
    replaced = alice.post_schedule(server, {"image_schedule": {"retention": 4}})
    assert replaced.status_code == 200, replaced.text
    assert alice.get_schedule(server).json()["image_schedule"]["retention"] == 4
