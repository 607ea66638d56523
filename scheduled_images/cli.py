"""The `scheduled-images` command: a click group whose subcommands come from entry points.

Each package declares its commands in `pyproject.toml` under `scheduled_images.commands`, the
way Celery's command line finds plugin commands; a command's module is imported only when that
command runs (or when `--help` lists them all).
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

import click

from common.settings import SettingsError

#: The entry point group every package registers its commands in.
COMMANDS_GROUP = "scheduled_images.commands"


def _commands() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=COMMANDS_GROUP)}


class EntryPointGroup(click.Group):
    """A click group whose commands are loaded from entry points on first use; a setting a
    command cannot use ends it with a usage error that names it, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            raise click.UsageError(str(error)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        point = _commands().get(name)
        if point is None:
            return None
        loaded = point.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"entry point {point.value} is not a click command")
        return loaded


@click.group(cls=EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Scheduled Images: daily and weekly images of cloud servers, planned under a cap."""


def main() -> None:
    sys.exit(cli.main(prog_name="scheduled-images"))
