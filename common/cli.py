"""The `scheduled-images` command: one click group; each component adds its commands."""

from __future__ import annotations

import sys

import click

from common.settings import SETTINGS, Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Scheduled Images: daily and weekly images of cloud servers, planned under a cap."""


@cli.command("settings")
def show_settings() -> None:
    """Print every setting, its default and its current value."""
    current = Settings.from_env()
    for setting in SETTINGS:
        value = getattr(current, setting.name.lower(), "")
        if setting.secret and value:
            value = "***"
        click.echo(f"{setting.name}={value}  # default {setting.default!r}: {setting.help}")


def _register() -> None:
    from api.cli import api_command, token
    from common.db_cli import db
    from common.sim_cli import sim
    from common.up import up
    from workers.cli import beat, worker
    from workers.flower_cli import flower

    for command in (api_command, token, db, sim, up, worker, beat, flower):
        cli.add_command(command)
    from scheduler.cli import plan
    from scheduler.simulate import simulate

    cli.add_command(plan)
    cli.add_command(simulate)


_register()


def main() -> None:
    sys.exit(cli.main(prog_name="scheduled-images"))
