"""`scheduled-images soak`: the whole service on a simulated cloud for days at an accelerated
clock, faults injected, and a report of whether every period was imaged once."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import click

from common.logging import setup_logging
from common.settings_cli import load_settings
from scheduled_images.process_group import StopSignals
from scheduled_images.soak.faults import parse_faults
from scheduled_images.soak.run import Soak
from scheduled_images.soak.servers import SoakError, refuse_restarts, start_servers


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    servers: int
    tenants: int
    days: float
    speed: float
    cap: int | None
    cap_factor: float
    faults: frozenset[str]
    seed: int
    report: Path


def _faults(_ctx: click.Context, _param: click.Parameter, value: str) -> frozenset[str]:
    try:
        return parse_faults(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("soak")
@click.option("--servers", type=click.IntRange(1), required=True, help="Servers in the fleet.")
@click.option("--tenants", type=click.IntRange(1), required=True, help="Tenants owning them.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), required=True)
@click.option(
    "--speed",
    type=click.FloatRange(min=1),
    required=True,
    help="Simulated seconds per real second.",
)
@click.option("--cap", type=click.IntRange(1), default=None, help="The in-flight cap.")
@click.option(
    "--cap-factor",
    type=click.FloatRange(min=1),
    default=None,
    help="The cap as this times the planner's lower bound (default 1.2).",
)
@click.option("--faults", default="", callback=_faults, help="Comma list of faults to inject.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--report",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for summary.json, load.png, lateness.png and the service's log.",
)
def soak(
    servers: int,
    tenants: int,
    days: float,
    speed: float,
    cap: int | None,
    cap_factor: float | None,
    faults: frozenset[str],
    seed: int,
    report: Path,
) -> None:
    """Run the service on a simulated fleet for DAYS simulated days; exit 0 when all is well.

    Faults: kill-workers (a pool killed every six simulated hours), redis-restart (twice),
    postgres-restart (once), compute-errors (1% of creates fail, 0.5% of images end in ERROR).
    """
    if tenants > servers:
        raise click.BadParameter(f"{tenants} tenants need at least as many servers", "--tenants")
    if cap is not None and cap_factor is not None:
        raise click.UsageError("give --cap or --cap-factor, not both")
    options = SoakOptions(
        servers, tenants, days, speed, cap, cap_factor or 1.2, faults, seed, report
    )
    settings = load_settings()
    setup_logging("json", "WARNING")
    try:
        refuse_restarts(settings.database_url, settings.broker_url, faults)
        report.mkdir(parents=True, exist_ok=True)
        code = run_soak(options, settings)
    except SoakError as error:
        click.echo(f"soak: {error}", err=True)
        sys.exit(2)
    sys.exit(code)


def run_soak(options: SoakOptions, settings) -> int:  # type: ignore[no-untyped-def]
    servers = start_servers(settings.database_url, settings.broker_url)
    try:
        with StopSignals() as stopping:
            return Soak(options, settings, servers, stopping).run()
    finally:
        servers.close()


def cap_from_bound(bound: float, factor: float) -> int:
    return max(1, math.ceil(bound * factor - 1e-9))
