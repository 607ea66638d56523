"""`scheduled-images up`: the whole service on one machine, with a demo tenant to try it on."""

from __future__ import annotations

import json

import click

from api.auth import add_token
from common import migrate
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.embedded import resolve_urls
from common.logging import setup_logging

DEMO_TENANT = "demo"
DEMO_TOKEN = "demo-token"


def _demo_servers(driver: SimulatedDriver, state_file) -> list[str]:  # type: ignore[no-untyped-def]
    """The demo's servers, made once and found again on the next start."""
    if state_file.exists():
        return json.loads(state_file.read_text())
    servers = driver.add_servers(DEMO_TENANT, 3, disk_gb=10)
    state_file.write_text(json.dumps(servers))
    return servers


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
def up(host: str, port: int) -> None:
    """Run the service on this machine; embedded servers where no URL is set."""
    from api.cli import serve
    from common.cli import load_settings

    settings = resolve_urls(load_settings())
    setup_logging(settings.log_format, settings.log_level)
    migrate.upgrade(settings.database_url)
    sessions = make_session_factory(make_engine(settings.database_url))
    driver = SimulatedDriver(sessions, seconds_per_gb=settings.sim_seconds_per_gb)
    if settings.auth_backend == "static":
        add_token(settings.auth_tokens_file, DEMO_TOKEN, DEMO_TENANT, ["creator"])
    servers = _demo_servers(driver, settings.state_dir / "demo-servers.json")
    base = f"http://{host}:{port}"
    server_url = f"{base}/v2/{DEMO_TENANT}/servers/{servers[0]}/rax-si-image-schedule"
    click.echo(
        f"\nScheduled Images is up at {base} (docs: {base}/docs)\n"
        f"  tenant: {DEMO_TENANT}   token: {DEMO_TOKEN}\n"
        f"  demo servers: {' '.join(servers)}\n\n"
        f"  curl -s -X POST -H 'X-Auth-Token: {DEMO_TOKEN}' -H 'Content-Type: application/json' "
        f'-d \'{{"image_schedule": {{"retention": 7}}}}\' {server_url}\n'
        f"  curl -s -H 'X-Auth-Token: {DEMO_TOKEN}' {server_url}\n",
        err=True,
    )
    serve(settings, host, port)
