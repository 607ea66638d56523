"""`scheduled-images up` for real: the whole service as child processes of one command, on
embedded servers and on servers of the test's own; Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests.support import databases
from tests.support.processes import BIN, free_ports, wait_for

pytestmark = pytest.mark.slow

API_METRICS = (
    "si_runs",
    "si_in_flight",
    "si_inflight_cap",
    "si_queue_length",
    "si_oldest_waiting_run_age_seconds",
    "si_planned_peak_in_flight",
    "si_runs_failed",
)
POOLS = ("tick", "create", "poll", "retention", "plan", "webhook")


class Up:
    """One `scheduled-images up`, in a session of its own: the test's signals reach only it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        # The API, flower, then beat's and each pool's exporter.
        self.port = free_ports(3 + len(POOLS))
        self.flower_port, self.metrics_base = self.port + 1, self.port + 2
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "scheduled-images"),
                "up",
                "--port",
                str(self.port),
                "--flower-port",
                str(self.flower_port),
                "--metrics-base-port",
                str(self.metrics_base),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 60) -> list[str]:
        def banner() -> re.Match | None:
            if self.process.poll() is not None:
                raise AssertionError(f"up exited early:\n{self.text()[-6000:]}")
            return re.search(r"demo servers: ([0-9a-f\- ]+)\n", self.text())

        try:
            found = wait_for(banner, timeout, "the banner", interval=0.3)
        except AssertionError:
            raise AssertionError(f"no banner:\n{self.text()[-6000:]}") from None
        return found.group(1).split()  # type: ignore[union-attr]

    def processes(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self, timeout: float = 40) -> int:
        os.kill(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for child in self.processes() if self.process.poll() is None else []:
            with contextlib.suppress(psutil.Error):
                child.kill()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k not in ("DATABASE_URL", "BROKER_URL")
    }
    env.update(
        STATE_DIR=str(tmp_path / "state"),
        LOG_FORMAT="text",
        # The default (15 s) also shows the first images within the minute; this keeps the
        # test short.
        POLL_INTERVAL_S="2",
        TICK_INTERVAL_S="1",
        API_WORKERS="1",
        **extra,
    )
    env.pop("AUTH_TOKENS_FILE", None)
    env.pop("FLOWER_BASIC_AUTH", None)
    return env


def _demo_token(up: Up) -> str:
    found = re.search(r"tenant: demo   token: (\S+)\n", up.text())
    assert found, "the banner names no demo token"
    return found.group(1)


def _runs(up: Up, server: str) -> list[dict]:
    response = requests.get(
        f"{up.base}/v2/demo/servers/{server}/rax-si-image-schedule/runs",
        headers={"X-Auth-Token": _demo_token(up)},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()["runs"]


def _check_running_service(up: Up, servers: list[str], state_dir: Path) -> None:
    assert requests.get(f"{up.base}/healthz", timeout=5).json() == {"status": "ok"}
    assert len(servers) == 3

    def an_image() -> bool:
        return any(run["state"] == "done" for server in servers for run in _runs(up, server))

    wait_for(an_image, 60, "a demo image (a run done)", interval=0.5)

    flower = f"http://127.0.0.1:{up.flower_port}"
    assert requests.get(flower, timeout=5).status_code == 401
    user, password = (state_dir / "flower-auth").read_text().strip().split(":", 1)
    for name in ("tokens.json", "demo-tokens.json", "flower-auth"):
        assert (state_dir / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    well_known = requests.get(
        f"{up.base}/v2/demo/rax-si-image-schedules",
        headers={"X-Auth-Token": "demo-token"},
        timeout=5,
    )
    assert well_known.status_code == 401

    def every_pool_in_flower() -> dict | None:
        workers = requests.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=(user, password), timeout=10
        ).json()
        pools = {name.split("@")[0] for name in workers}
        return workers if pools >= set(POOLS) else None

    workers = wait_for(every_pool_in_flower, 30, "every pool in flower", interval=1)
    assert all("si.create_image" in w["registered"] for w in workers.values())  # type: ignore[union-attr]
    assert requests.get(flower, auth=(user, password), timeout=5).status_code == 200

    metrics = requests.get(f"{up.base}/metrics", timeout=5).text
    for name in API_METRICS:
        assert f"# TYPE {name} gauge" in metrics, name
    assert re.search(r'^si_runs\{state="done"\} [1-9]', metrics, re.M), metrics
    assert 'si_queue_length{queue="create"}' in metrics
    # The poll pool saw the image finish; its exporter serves the duration histogram.
    poll = f"http://127.0.0.1:{up.metrics_base + 1 + POOLS.index('poll')}/metrics"

    def image_duration() -> bool:
        try:
            text = requests.get(poll, timeout=5).text
        except requests.ConnectionError:
            return False
        return 'si_image_duration_seconds_count{trigger="manual"}' in text

    try:
        wait_for(image_duration, 10, "the image duration histogram")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{up.text()[-6000:]}") from None
    assert "si_task_seconds_bucket" in requests.get(poll, timeout=5).text


def _leftovers(state_dir: Path) -> list[psutil.Process]:
    """Processes that still use the state folder (the embedded PostgreSQL and Redis)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
            if str(state_dir) in text and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def _stop_and_check(up: Up, state_dir: Path) -> None:
    # api, its gunicorn worker, beat, flower, and each pool's parent and its 1+3+1+1 children.
    wait_for(lambda: len(up.processes()) >= 14, 30, "every process and pool child to start")
    children = up.processes()
    assert up.interrupt() == 0, up.text()[-4000:]
    still = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert still == [], [c.cmdline() for c in still]
    wait_for(lambda: not _leftovers(state_dir), 10, "the embedded servers to stop")


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.kill()


def test_up_on_embedded_servers_and_resume(tmp_path: Path, ups: list[Up]) -> None:
    state_dir = tmp_path / "state"
    env = _env(tmp_path)
    first = Up(env, tmp_path / "up-1.log")
    ups.append(first)
    servers = first.wait_up()
    _check_running_service(first, servers, state_dir)
    done = {run["id"] for server in servers for run in _runs(first, server)}
    _stop_and_check(first, state_dir)

    # A second start finds the same servers, token, password and history.
    auth = (state_dir / "flower-auth").read_text()
    token = _demo_token(first)
    second = Up(env, tmp_path / "up-2.log")
    ups.append(second)
    assert second.wait_up() == servers
    assert (state_dir / "flower-auth").read_text() == auth
    assert _demo_token(second) == token
    assert done <= {run["id"] for server in servers for run in _runs(second, server)}
    assert "demo schedules enabled" not in second.text()
    _stop_and_check(second, state_dir)


@pytest.fixture
def own_database(pg_admin_url: str) -> Iterator[str]:
    # Empty: `up` migrates it itself.
    url = databases.create(pg_admin_url, "si_up")
    yield url
    databases.drop(pg_admin_url, url)


def test_up_on_configured_servers(tmp_path: Path, own_database: str, redis_server, ups) -> None:  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "state"
    env = _env(tmp_path, DATABASE_URL=own_database, BROKER_URL=redis_server.url)
    up = Up(env, tmp_path / "up.log")
    ups.append(up)
    servers = up.wait_up()
    _check_running_service(up, servers, state_dir)
    assert not (state_dir / "pg").exists() and not (state_dir / "redis").exists()
    _stop_and_check(up, state_dir)
