"""Test fixtures: a real PostgreSQL (the local server, else the embedded one) and the API
served over a real socket."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from werkzeug.serving import make_server

from common.db import make_engine, make_session_factory
from common.embedded import embedded_postgres_url
from common.settings import Settings
from tests.support.databases import LOCAL_ADMIN_URL, answers, copy, create_migrated, drop

# `make mutation` runs the property tests once per mutant, two at a time: a failing example is
# all it needs, not the smallest one, and a slow draw is the machine's load, not a mutant.
hypothesis_settings.register_profile(
    "mutation",
    max_examples=40,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _find_postgres() -> tuple[str, str]:
    url = os.environ.get("TEST_DATABASE_URL", LOCAL_ADMIN_URL)
    if answers(url):
        return url, f"PostgreSQL server at {sa.make_url(url).render_as_string()}"
    state = Path(tempfile.gettempdir()) / "scheduled-images-test-state"
    url = embedded_postgres_url(state, database="postgres")
    return url, f"embedded PostgreSQL in {state / 'pg'} (nothing answered at {LOCAL_ADMIN_URL})"


def pytest_configure(config: pytest.Config) -> None:
    config._si_pg = _find_postgres()  # type: ignore[attr-defined]


def pytest_sessionstart(session: pytest.Session) -> None:
    # One line, shown under -q too (a report header is not), saying which server the run uses.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        from tests.support.processes import redis_executable

        reporter.write_line("database: " + session.config._si_pg[1])  # type: ignore[attr-defined]
        reporter.write_line(f"broker: a Redis of each end-to-end test's own, {redis_executable()}")


@pytest.fixture(scope="session")
def pg_admin_url(pytestconfig: pytest.Config) -> str:
    return pytestconfig._si_pg[0]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A database of this test run's own, migrated to head, dropped at the end."""
    template = os.environ.get("SI_TEST_DATABASE_TEMPLATE")
    if template:  # a migrated database to copy, named by `make mutation`
        url = copy(pg_admin_url, template, template)
    else:
        url = create_migrated(pg_admin_url, "si_test")
    yield url
    drop(pg_admin_url, url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: sa.Engine):  # type: ignore[no-untyped-def]
    """A session factory on clean tables."""
    from common.models import Base

    with engine.begin() as connection:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return make_session_factory(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "STATE_DIR": str(tmp_path / "state"),
            "AUTH_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "SIM_SECONDS_PER_GB": "0.01",
            "LOG_FORMAT": "text",
        }
    )


@pytest.fixture
def cloud(sessions, settings):  # type: ignore[no-untyped-def]
    from common.compute.simulated import SimulatedDriver

    return SimulatedDriver(sessions, seconds_per_gb=settings.sim_seconds_per_gb)


@dataclasses.dataclass
class Client:
    """A tenant's view of the API over HTTP."""

    base: str
    token: str | None
    tenant: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def schedule_url(self, server_id: str, tenant: str | None = None) -> str:
        return self.url(f"/v2/{tenant or self.tenant}/servers/{server_id}/rax-si-image-schedule")

    def request(self, method: str, url: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        headers = kwargs.pop("headers", {})
        if self.token is not None:
            headers.setdefault("X-Auth-Token", self.token)
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def post_schedule(self, server_id: str, body: object, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return self.request("POST", self.schedule_url(server_id), json=body, **kwargs)

    def get_schedule(self, server_id: str) -> requests.Response:
        return self.request("GET", self.schedule_url(server_id))

    def delete_schedule(self, server_id: str) -> requests.Response:
        return self.request("DELETE", self.schedule_url(server_id))

    def as_token(self, token: str | None, tenant: str | None = None) -> Client:
        return Client(self.base, token, tenant or self.tenant)


class ServedApp:
    """An app served on 127.0.0.1 by werkzeug in a thread: a real socket, stoppable."""

    def __init__(self, app, port: int = 0) -> None:  # type: ignore[no-untyped-def]
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    """Tokens for two tenants: alice (creator), bob (creator), olive (observer of A), root."""
    from api.auth import add_token

    table = {
        "alice": ("tenant-a", ["creator"]),
        "olive": ("tenant-a", ["observer"]),
        "bob": ("tenant-b", ["creator"]),
        "root": ("operators", ["admin"]),
    }
    for token, (tenant, roles) in table.items():
        add_token(settings.auth_tokens_file, token, tenant, roles)
    return {token: tenant for token, (tenant, _) in table.items()}


@pytest.fixture
def api_server(settings, sessions, tokens):  # type: ignore[no-untyped-def]
    from api import create_app

    served = ServedApp(create_app(settings, sessions=sessions))
    yield served
    served.stop()


@pytest.fixture
def alice(api_server) -> Client:  # type: ignore[no-untyped-def]
    return Client(api_server.base, "alice", "tenant-a")
