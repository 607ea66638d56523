"""`scheduled-images up`: the whole service on one machine, with a demo tenant to try it on.

It runs the API, beat, one worker pool per queue and Flower as child processes of its own,
each in a process group of its own so that stopping one stops everything it forked, and
prints their output interleaved, each line labelled with the process it came from. Where no
DATABASE_URL or BROKER_URL is set, the embedded PostgreSQL and Redis live in this process
(in STATE_DIR), so they outlive every child and stop after them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import click
import requests
import sqlalchemy as sa

from api.auth.static import add_token, remove_tokens
from common import migrate
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.embedded import resolve_urls
from common.logging import setup_logging
from common.models import SimServer
from common.secret_files import write_private
from common.settings import Settings
from common.settings_cli import load_settings
from scheduled_images.process_group import Child, ProcessGroup, StopSignals
from workers.celery_app import (
    CREATE_QUEUE,
    PLAN_QUEUE,
    POLL_QUEUE,
    RETENTION_QUEUE,
    TICK_QUEUE,
    WEBHOOK_QUEUE,
)
from workers.flower_cli import flower_basic_auth

DEMO_TENANT = "demo"
#: Tokens an earlier version wrote into every state folder: anyone who read its docs knew them.
WELL_KNOWN_TOKENS = ("demo-token", "demo-admin-token")
# Small disks: at the default SIM_SECONDS_PER_GB an image takes a couple of seconds.
DEMO_DISK_GB = 4
# (retention, day_of_week) of each demo server's schedule: two daily, one weekly.
DEMO_SCHEDULES = ((7, None), (3, None), (4, "SATURDAY"))
# Processes per pool. Creates wait on the compute API, so that pool gets the most; one
# process is plenty for the tick, which only talks to PostgreSQL and Redis, and for the
# rebalances, which run one at a time.
POOLS = (
    (TICK_QUEUE, 1),
    (CREATE_QUEUE, 3),
    (POLL_QUEUE, 1),
    (RETENTION_QUEUE, 1),
    (PLAN_QUEUE, 1),
    (WEBHOOK_QUEUE, 1),
)
API_START_TIMEOUT_S = 60.0
#: Celery's warning (a UserWarning) that a worker runs as root, hidden by message: the
#: category's module cannot be named before the interpreter has its packages.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges:UserWarning"
# Celery's warm shutdown lets a running task finish; tasks are bounded by the compute
# timeout, so this is enough, and past it the group is killed (every task is idempotent).
STOP_TIMEOUT_S = 20.0


def cli_argv(*args: str) -> list[str]:
    """This interpreter running the `scheduled-images` CLI, wherever it was installed."""
    return [sys.executable, "-c", "from scheduled_images.cli import main; main()", *args]


def demo_servers(sessions, driver: SimulatedDriver) -> list[str]:  # type: ignore[no-untyped-def]
    """The demo tenant's servers, made once; the database keeps them for the next start."""
    query = (
        sa.select(SimServer.id)
        .where(SimServer.tenant_id == DEMO_TENANT)
        .order_by(SimServer.name, SimServer.id)
        .limit(len(DEMO_SCHEDULES))
    )
    with sessions() as session:
        found = list(session.scalars(query))
    if found:
        return found
    driver.add_servers(DEMO_TENANT, len(DEMO_SCHEDULES), disk_gb=DEMO_DISK_GB)
    # Read back in the order every later start reads them, so each keeps its schedule.
    with sessions() as session:
        return list(session.scalars(query))


@dataclasses.dataclass(frozen=True)
class DemoTokens:
    tenant: str
    operator: str


def demo_tokens(settings: Settings) -> DemoTokens:
    """The demo tenant's and the operator's tokens: random, made on the first start and kept
    (readable by this user alone) in the state folder for the next."""
    remove_tokens(settings.auth_tokens_file, WELL_KNOWN_TOKENS)
    path = settings.state_dir / "demo-tokens.json"
    if path.exists():
        return DemoTokens(**json.loads(path.read_text()))
    tokens = DemoTokens(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    add_token(settings.auth_tokens_file, tokens.tenant, DEMO_TENANT, ["creator"])
    add_token(settings.auth_tokens_file, tokens.operator, "operators", ["admin"])
    write_private(path, json.dumps(dataclasses.asdict(tokens)))
    return tokens


def enable_demo(base: str, servers: list[str], token: str) -> list[str]:
    """Enable the demo schedules through the API, as a user would; returns those new.

    The planner may put a new schedule hours away, so each new one is also run now through
    the runs endpoint: the first images appear within seconds of the first start.
    """
    headers = {"X-Auth-Token": token}
    enabled = []
    for server, (retention, day) in zip(servers, DEMO_SCHEDULES, strict=False):
        url = f"{base}/v2/{DEMO_TENANT}/servers/{server}/rax-si-image-schedule"
        if requests.get(url, headers=headers, timeout=10).status_code == 200:
            continue
        body = {"image_schedule": {"retention": retention, "day_of_week": day}}
        requests.post(url, json=body, headers=headers, timeout=10).raise_for_status()
        requests.post(f"{url}/runs", headers=headers, timeout=10).raise_for_status()
        enabled.append(server)
    return enabled


def wait_for_api(base: str, api: Child, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while time.monotonic() < deadline and not stopping.is_set() and api.process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        time.sleep(0.2)
    return False


def for_a_terminal(settings: Settings, environ: Mapping[str, str], tty: bool) -> Settings:
    """Where a person reads the output, text lines instead of JSON, unless LOG_FORMAT says."""
    if tty and not environ.get("LOG_FORMAT"):
        return settings.replace(log_format="text")
    return settings


def child_env(settings: Settings, flower_auth: str | None = None) -> dict[str, str]:
    """The environment of every child: this one's, with the resolved servers and files."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        LOG_FORMAT=settings.log_format,
        # Every process here runs as the user who typed `make run`; Celery's warning that
        # a worker runs as root is for a deployment, where the image runs as a user of its own.
        PYTHONWARNINGS=ROOT_WARNING,
        DATABASE_URL=settings.database_url,
        BROKER_URL=settings.broker_url,
        STATE_DIR=str(settings.state_dir),
        AUTH_TOKENS_FILE=str(settings.auth_tokens_file),
        PYTHONUNBUFFERED="1",
    )
    if flower_auth is not None:
        env["FLOWER_BASIC_AUTH"] = flower_auth
    return env


def start_api(
    supervisor: ProcessGroup, env: dict[str, str], state_dir: Path, host: str, port: int
) -> Child:
    api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus" / "api")}
    return supervisor.start("api", cli_argv("api", "--host", host, "--port", str(port)), api_env)


def start_back_end(
    supervisor: ProcessGroup,
    env: dict[str, str],
    state_dir: Path,
    host: str,
    metrics_base_port: int | None,
) -> list[str]:
    """Beat and one worker pool per queue; the URLs of their exporters, if a port is given
    (beat's on it, each pool's on the next ones)."""

    def exporter(offset: int, queue: str | None = None) -> dict[str, str]:
        if not metrics_base_port:
            return {"METRICS_PORT": "0"}
        exported = {"METRICS_PORT": str(metrics_base_port + offset)}
        if queue is not None:
            exported["PROMETHEUS_MULTIPROC_DIR"] = str(state_dir / "prometheus" / queue)
        return exported

    supervisor.start("beat", cli_argv("beat"), {**env, **exporter(0)})
    for offset, (queue, concurrency) in enumerate(POOLS, start=1):
        pool_env = {**env, **exporter(offset, queue)}
        args = ["worker", "--queues", queue, "--concurrency", str(concurrency)]
        supervisor.start(f"worker:{queue}", cli_argv(*args, "--hostname", f"{queue}@%h"), pool_env)
    if not metrics_base_port:
        return []
    return [f"http://{host}:{metrics_base_port + k}/metrics" for k in range(len(POOLS) + 1)]


def banner(
    base: str,
    flower_url: str,
    flower_auth: str,
    metrics: list[str],
    servers: list[str],
    tokens: DemoTokens | None,
) -> str:
    lines = [
        "",
        f"Scheduled Images is up at {base}",
        f"  docs:    {base}/docs   (OpenAPI: {base}/openapi.json)",
        f"  flower:  {flower_url}   (basic auth {flower_auth})",
        f"  metrics: {base}/metrics   workers and beat: {' '.join(metrics)}",
    ]
    if servers and tokens is not None:
        lines += _demo_lines(base, servers, tokens)
    lines += ["", "Ctrl-C stops everything; the next start resumes from the state folder.", ""]
    return "\n".join(lines)


def _demo_lines(base: str, servers: list[str], tokens: DemoTokens) -> list[str]:
    server_url = f"{base}/v2/{DEMO_TENANT}/servers/{servers[0]}/rax-si-image-schedule"
    user, operator = tokens.tenant, tokens.operator
    return [
        f"  tenant: {DEMO_TENANT}   token: {user}",
        f"  operator token: {operator}",
        f"  demo servers: {' '.join(servers)}",
        "",
        "  # the runs of a demo server (its first image appears within seconds)",
        f"  curl -s -H 'X-Auth-Token: {user}' {server_url}/runs",
        "  # its schedule and next planned run",
        f"  curl -s -H 'X-Auth-Token: {user}' {server_url}",
        "  # keep 7 images, weekly on Saturdays",
        f"  curl -s -X POST -H 'X-Auth-Token: {user}' -H 'Content-Type: "
        f'application/json\' -d \'{{"image_schedule": {{"retention": 7, "day_of_week": '
        f'"SATURDAY"}}}}\' {server_url}',
        "  # run it now",
        f"  curl -s -X POST -H 'X-Auth-Token: {user}' {server_url}/runs",
        "  # runs by state and the cap; set the cap",
        f"  curl -s -H 'X-Auth-Token: {operator}' {base}/admin/v1/runs/summary",
        f"  curl -s -X PUT -H 'X-Auth-Token: {operator}' -H 'Content-Type: "
        f"application/json' -d '{{\"inflight_cap\": 20}}' {base}/admin/v1/cap",
    ]


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--flower-port", type=click.IntRange(1, 65535), default=None, help="Default: FLOWER_PORT."
)
@click.option(
    "--metrics-base-port",
    type=click.IntRange(1, 65530),
    default=9100,
    show_default=True,
    help="Beat's exporter on this port, each worker pool's on the next ones.",
)
def up(host: str, port: int, flower_port: int | None, metrics_base_port: int) -> None:
    """Run the service on this machine; embedded servers where no URL is set."""
    configured = for_a_terminal(load_settings(), os.environ, sys.stdout.isatty())
    setup_logging(configured.log_format, configured.log_level)
    supervisor = ProcessGroup(sys.stdout)
    with StopSignals() as stopping:
        try:
            code = _run(
                configured, supervisor, stopping, host, port, flower_port, metrics_base_port
            )
        finally:
            supervisor.echo("[up] stopping every process")
            supervisor.stop_all(STOP_TIMEOUT_S)
            supervisor.echo("[up] stopped")
    sys.exit(code)


def _prepare_demo(settings: Settings) -> tuple[list[str], DemoTokens | None]:
    """On the simulated cloud with static tokens: the demo servers and tokens, else none."""
    if settings.compute_driver != "simulated" or settings.auth_backend != "static":
        return [], None
    tokens = demo_tokens(settings)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        sessions = make_session_factory(engine)
        driver = SimulatedDriver(sessions, seconds_per_gb=settings.sim_seconds_per_gb)
        return demo_servers(sessions, driver), tokens
    finally:
        engine.dispose()


def _run(
    configured: Settings,
    supervisor: ProcessGroup,
    stopping: threading.Event,
    host: str,
    port: int,
    flower_port: int | None,
    metrics_base_port: int,
) -> int:
    settings = resolve_urls(configured, broker=True)
    migrate.upgrade(settings.database_url)
    servers, tokens = _prepare_demo(settings)
    flower_auth = flower_basic_auth(settings)
    env = child_env(settings, flower_auth)
    base = f"http://{host}:{port}"
    flower_port = flower_port or settings.flower_port

    api = start_api(supervisor, env, settings.state_dir, host, port)
    metrics = start_back_end(supervisor, env, settings.state_dir, host, metrics_base_port)
    supervisor.start(
        "flower", cli_argv("flower", "--address", host, "--port", str(flower_port)), env
    )
    if not wait_for_api(base, api, stopping):
        if stopping.is_set():
            return 0
        supervisor.echo(f"[up] the API did not answer at {base}/healthz; stopping")
        return 1
    if tokens is not None:
        try:
            started = enable_demo(base, servers, tokens.tenant)
        except requests.RequestException as error:
            supervisor.echo(f"[up] could not enable the demo schedules: {error}")
            return 1
        if started:
            supervisor.echo(f"[up] demo schedules enabled and run now: {' '.join(started)}")
    supervisor.echo(
        banner(base, f"http://{host}:{flower_port}", flower_auth, metrics, servers, tokens)
    )
    while not stopping.wait(0.5):
        gone = supervisor.exited()
        if gone is not None:
            supervisor.echo(
                f"[up] {gone.label} exited with code {gone.process.returncode}; stopping"
            )
            return 1
    return 0
