"""`scheduled-images plan`: the planned load of the fleet in the database, and rebalancing."""

from __future__ import annotations

import click

from common.clock_store import shared_clock
from common.db import make_engine, make_session_factory, transaction
from common.embedded import resolve_urls
from common.runtime_settings import inflight_cap
from common.settings_cli import load_settings
from scheduler.fleet_plan import planned_week, rebalance_fleet
from scheduler.planning_report import PlanningReport
from scheduler.rebalances import lock_rebalancing

BARS = " ▁▂▃▄▅▆▇█"


def _sessions():  # type: ignore[no-untyped-def]
    settings = resolve_urls(load_settings())
    return settings, make_session_factory(make_engine(settings.database_url))


@click.group()
def plan() -> None:
    """The plan: when each schedule runs, and the load it makes."""


@plan.command("show")
def show() -> None:
    """Print the planned load per hour for the coming week against the cap."""
    settings, sessions = _sessions()
    with sessions() as session:
        week = planned_week(session, shared_clock(sessions, settings.clock_speed).now())
        cap = inflight_cap(session, settings.inflight_cap)
    top = max([cap, week["planned_peak"], 1.0])
    click.echo(
        f"{week['schedules']} schedules; planned peak {week['planned_peak']:.0f} in "
        f"flight, cap {cap}, lower bound {week['lower_bound']:.1f}"
    )
    for day in range(7):
        hours = week["hours"][day * 24 : (day + 1) * 24]
        bars = "".join(BARS[min(8, round(8 * h["planned_in_flight"] / top))] for h in hours)
        peak = max(h["planned_in_flight"] for h in hours)
        click.echo(f"{hours[0]['hour'][:13]}  {bars}  peak {peak:.0f}")
    click.echo(week["lower_bound_explanation"])


@plan.command("rebalance")
def rebalance_command() -> None:
    """Re-plan every schedule under the current cap, here and now; print how many moved.

    Never at the same time as another rebalance (a job of the operator API): it waits.
    """
    settings, sessions = _sessions()
    with transaction(sessions) as session:
        if not lock_rebalancing(session, wait=False):
            click.echo("another rebalance is running; waiting for it to end", err=True)
            lock_rebalancing(session, wait=True)
        cap = inflight_cap(session, settings.inflight_cap)
        # The stages only: the fleet is read inside, so no bar.
        now = shared_clock(sessions, settings.clock_speed).now()
        summary = rebalance_fleet(session, cap, now, observer=PlanningReport())
    click.echo(
        f"{summary.schedules} schedules, {summary.moved} moved; planned peak "
        f"{summary.peak:.0f} against cap {cap} (lower bound {summary.lower_bound:.1f}); "
        f"{summary.on_day_share:.1%} of weekly schedules on their day"
    )
