"""`scheduled-images settings`, and the settings as every command loads them."""

from __future__ import annotations

import click

from common.settings import SETTINGS, Settings, SettingsError


def load_settings() -> Settings:
    """The settings from the environment; a bad value is a usage error that names it."""
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


@click.command("settings")
def settings() -> None:
    """Print every setting, its default and its current value."""
    current = load_settings()
    for setting in SETTINGS:
        value = getattr(current, setting.name.lower(), "")
        if setting.secret and value:
            value = "***"
        click.echo(f"{setting.name}={value}  # default {setting.default!r}: {setting.help}")
