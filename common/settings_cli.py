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


def markdown_table() -> str:
    """The README's table of the settings: name, default, what it does."""
    rows = ["| setting | default | what it does |", "| --- | --- | --- |"]
    for row in SETTINGS:
        default = f"`{row.default}`" if row.default else "(empty)"
        rows.append(f"| `{row.name}` | {default} | {row.help} |")
    return "\n".join(rows)


@click.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table of settings and defaults only.")
def settings(markdown: bool) -> None:
    """Print every setting, its default and its current value."""
    if markdown:
        click.echo(markdown_table())
        return
    current = load_settings()
    for row in SETTINGS:
        shown = row.shown(getattr(current, row.name.lower()))
        click.echo(f"{row.name}={shown}  # default {row.default!r}: {row.help}")
