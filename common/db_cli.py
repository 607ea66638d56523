"""`scheduled-images db`: schema migrations."""

from __future__ import annotations

import click

from common import migrate
from common.embedded import resolve_urls
from common.settings_cli import load_settings


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION."""
    settings = resolve_urls(load_settings())
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}")
