"""`scheduled-images sim`: operate the simulated cloud (servers, images, faults)."""

from __future__ import annotations

import json

import click

from common.clock_store import SharedClock
from common.compute.base import ServerNotFound
from common.compute.simulated import FAULTS, SimulatedDriver
from common.db import make_engine, make_session_factory
from common.embedded import resolve_urls
from common.settings_cli import load_settings


def _driver() -> SimulatedDriver:
    settings = resolve_urls(load_settings())
    sessions = make_session_factory(make_engine(settings.database_url))
    return SimulatedDriver(
        sessions,
        seconds_per_gb=settings.sim_seconds_per_gb,
        clock=SharedClock(sessions, settings.clock_speed),
    )


@click.group()
def sim() -> None:
    """The simulated cloud kept in the service's database."""


@sim.command("add-servers")
@click.option("--tenant", required=True, help="Tenant that owns the servers.")
@click.option("--count", type=click.IntRange(1, 100_000), default=1, show_default=True)
@click.option("--disk-gb", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--fault", type=click.Choice(FAULTS), default=None)
def add_servers(tenant: str, count: int, disk_gb: int, fault: str | None) -> None:
    """Create servers; print their ids, one a line."""
    for server_id in _driver().add_servers(tenant, count, disk_gb=disk_gb, fault=fault):
        click.echo(server_id)


@sim.command("images")
@click.option("--server", "server_id", required=True)
def images(server_id: str) -> None:
    """List a server's images with status and metadata, one JSON object a line."""
    driver = _driver()
    try:
        tenant_id = driver.server_tenant(server_id)
    except ServerNotFound as error:
        raise click.ClickException(str(error)) from None
    for image in driver.list_server_images(tenant_id, server_id):
        click.echo(
            json.dumps(
                {
                    "id": image.id,
                    "name": image.name,
                    "status": image.status,
                    "created_at": image.created_at,
                    "metadata": image.metadata,
                }
            )
        )


@sim.command("manual-image")
@click.option("--server", "server_id", required=True)
@click.option("--name", default=None)
def manual_image(server_id: str, name: str | None) -> None:
    """Make an image by hand, as a user would; retention never touches it."""
    try:
        click.echo(_driver().create_manual_image(server_id, name))
    except Exception as error:
        raise click.ClickException(str(error)) from None


@sim.command("fault")
@click.option("--server", "server_id", required=True)
@click.option("--kind", type=click.Choice((*FAULTS, "none")), required=True)
def fault(server_id: str, kind: str) -> None:
    """Switch a fault on for a server (or off with `none`)."""
    try:
        _driver().set_fault(server_id, None if kind == "none" else kind)
    except ServerNotFound as error:
        raise click.ClickException(str(error)) from None


@sim.command("remove-server")
@click.option("--server", "server_id", required=True)
def remove_server(server_id: str) -> None:
    """Make a server vanish; its images stay."""
    try:
        _driver().remove_server(server_id)
    except ServerNotFound as error:
        raise click.ClickException(str(error)) from None
