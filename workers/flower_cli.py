"""`scheduled-images flower`: Flower on the service's broker, always behind basic auth."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import click

from common.embedded import resolve_urls
from common.logging import setup_logging
from common.secret_files import write_private
from common.settings import Settings
from common.settings_cli import load_settings

FLOWER_USER = "admin"


def flower_basic_auth(settings: Settings) -> str:
    """FLOWER_BASIC_AUTH, else a password generated once and kept in the state folder.

    Flower shows task arguments (tenant and server ids) and can revoke tasks, so it is never
    served open; keeping the generated password lets a restart print the same one.
    """
    if settings.flower_basic_auth:
        return settings.flower_basic_auth
    path = Path(settings.state_dir) / "flower-auth"
    if path.exists():
        return path.read_text().strip()
    value = f"{FLOWER_USER}:{secrets.token_urlsafe(16)}"
    write_private(path, value + "\n")
    return value


@click.command("flower")
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port (default: FLOWER_PORT).",
)
def flower(address: str, port: int | None) -> None:
    """Flower: the workers, queues and tasks of every pool, live (basic auth)."""
    from workers.celery_app import configure

    settings = resolve_urls(load_settings(), broker=True)
    setup_logging(settings.log_format, settings.log_level)
    # Until the pools answer, every start logs "Inspect method ... failed" for each method;
    # Flower's own pages show workers that do not answer.
    logging.getLogger("flower.inspector").setLevel(logging.ERROR)
    app = configure(settings, settings.broker_url)
    auth = flower_basic_auth(settings)
    if not settings.flower_basic_auth:
        click.echo(
            f"flower basic auth: user {FLOWER_USER}, a generated password kept in "
            f"{settings.state_dir}/flower-auth",
            err=True,
        )
    app.start(
        [
            "flower",
            f"--address={address}",
            f"--port={port or settings.flower_port}",
            f"--basic-auth={auth}",
            # Pools scaled down leave workers Flower would list as offline for ever.
            "--purge_offline_workers=300",
        ]
    )
