"""`scheduled-images simulate`: plan a fleet file offline and show next week's load."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click
import numpy as np

from common.days import DAY_NAMES, day_number
from scheduler.planning import DAILY, PlanResult, planned_load, rebalance
from scheduler.planning.week import DAY_BINS, WEEK_BINS
from scheduler.planning_report import PlanningReport
from scheduler.replay import NOISE, WEEKS, delays, headroom, random_hour_slots, runs_of

FLEET_COLUMNS = ("server_id", "tenant_id", "day_of_week", "expected_duration_s")
PROGRESS_FROM = 50_000  # fleets at least this large get a progress bar


class FleetError(click.ClickException):
    """A fleet file that cannot be planned; the message names the line."""

    exit_code = 2


@dataclass(frozen=True)
class Fleet:
    server_id: list[str]
    tenant_id: np.ndarray
    day_of_week: np.ndarray  # DAILY (-1) for a daily schedule
    duration_s: np.ndarray


def read_fleet(path: Path) -> Fleet:
    """Parse and check a fleet CSV; raise FleetError naming the first bad line."""
    servers: list[str] = []
    tenants: list[str] = []
    days: list[int] = []
    durations: list[float] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as handle:
        # A plain reader with the columns' places: a DictReader's dict per row takes twice as
        # long on a million lines.
        reader = csv.reader(_text_lines(handle, path))
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise FleetError(
                f"{path}: line 1: the file is empty; expected a header {','.join(FLEET_COLUMNS)}"
            )
        missing = [c for c in FLEET_COLUMNS if c not in header]
        if missing:
            raise FleetError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise FleetError(f"{path}: line 1: column(s) {', '.join(twice)} appear twice")
        at_server, at_tenant, at_day, at_duration = (header.index(c) for c in FLEET_COLUMNS)
        for row in reader:
            if not row:  # a blank line, as a DictReader skips it
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise FleetError(f"{path}: line {line}: expected {len(header)} fields")
            server = row[at_server].strip()
            if not server:
                raise FleetError(f"{path}: line {line}: empty server_id")
            if server in seen:
                raise FleetError(
                    f"{path}: line {line}: duplicate server {server!r} (first on line "
                    f"{seen[server]})"
                )
            seen[server] = line
            tenant = row[at_tenant].strip()
            if not tenant:
                raise FleetError(f"{path}: line {line}: empty tenant_id")
            day_text = row[at_day].strip()
            day = DAILY if not day_text else day_number(day_text)
            if day is None:
                raise FleetError(
                    f"{path}: line {line}: unknown day {day_text!r}; expected one of "
                    f"{', '.join(DAY_NAMES)} or empty for daily"
                )
            duration_text = row[at_duration].strip()
            try:
                duration = float(duration_text)
            except ValueError:
                raise FleetError(
                    f"{path}: line {line}: expected_duration_s {duration_text!r} is not a number"
                ) from None
            if not math.isfinite(duration) or duration < 0:
                raise FleetError(
                    f"{path}: line {line}: expected_duration_s must be a non-negative number, "
                    f"not {duration_text!r}"
                )
            servers.append(server)
            tenants.append(tenant)
            days.append(day)
            durations.append(duration)
    if not servers:
        raise FleetError(f"{path}: the file has a header but no schedules")
    return Fleet(
        server_id=servers,
        tenant_id=np.array(tenants),
        day_of_week=np.array(days, dtype=np.int8),
        duration_s=np.array(durations, dtype=np.float64),
    )


def _text_lines(handle: BinaryIO, path: Path) -> Iterator[str]:
    """The file's lines as text, decoded one by one so that bytes that are not UTF-8 are
    reported on their own line (a text stream decodes ahead, in blocks)."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise FleetError(
                f"{path}: line {number}: not UTF-8 text (byte {error.start + 1} of the line)"
            ) from None


def write_plan(path: Path, server_id: list[str], slot_s: np.ndarray) -> None:
    """Write PLAN.csv atomically: a crash or error leaves no half-written file behind."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=".plan-", suffix=".csv", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("server_id", "slot_s"))
            writer.writerows(zip(server_id, slot_s.tolist(), strict=True))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def plot_load(path: Path, fleet: Fleet, plan: PlanResult) -> None:
    """Draw the planned in-flight load over the week against the cap, and the lower bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(WEEK_BINS) / (DAY_BINS / 24)
    fig, ax = plt.subplots(figsize=(14, 5), dpi=110)
    weekly = fleet.day_of_week != DAILY
    daily_load = _load_of(fleet, plan, ~weekly)
    ax.fill_between(hours, 0, daily_load, step="post", color="#c6dbef", label="daily images")
    ax.fill_between(
        hours, daily_load, plan.load, step="post", color="#6baed6", label="weekly images"
    )
    ax.step(
        hours,
        plan.load,
        where="post",
        color="#08519c",
        linewidth=0.8,
        label=f"planned in flight (peak {plan.peak:.0f})",
    )
    ax.axhline(plan.cap, color="#d62728", linewidth=1.5, label=f"cap {plan.cap:g}")
    ax.axhline(
        plan.lower_bound,
        color="#555555",
        linewidth=1,
        linestyle="--",
        label=f"lower bound {plan.lower_bound:.0f}",
    )
    ax.set_xlim(0, 168)
    ax.set_ylim(0, max(plan.peak, plan.cap) * 1.15)
    ax.set_xticks(np.arange(0, 169, 24))
    ax.set_xticks(np.arange(0, 169, 6), minor=True)
    ax.set_xticklabels([""] * 8)
    for day, name in enumerate(DAY_NAMES):
        ax.text(
            day * 24 + 12,
            -0.06,
            name.title(),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
        )
    ax.grid(axis="x", which="major", color="#999999", linewidth=0.8)
    ax.grid(axis="x", which="minor", color="#dddddd", linewidth=0.5)
    ax.set_ylabel("image creations in flight")
    ax.set_title(
        f"Planned load, week in UTC: {fleet.duration_s.size:,} schedules, "
        f"{plan.on_day_share:.1%} of weekly ones on their day (most the cap allows: "
        f"{plan.max_on_day_share:.1%})"
    )
    ax.legend(loc="upper left", ncol=5, fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _load_of(fleet: Fleet, plan: PlanResult, mask: np.ndarray) -> np.ndarray:
    return planned_load(fleet.day_of_week[mask], fleet.duration_s[mask], plan.slot_s[mask])


def _finite(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    # FloatRange lets nan through (no comparison with it holds), and inf: neither is a cap.
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _in_a_writable_folder(
    _ctx: click.Context, _param: click.Parameter, value: Path | None
) -> Path | None:
    """Checked before planning, which can take a minute: a file that cannot be written is
    named then, and nothing is written."""
    if value is None:
        return None
    folder = value.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"the folder {str(folder)!r} is not writable")
    return value


def _plot_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    value = _in_a_writable_folder(ctx, param, value)
    if value is not None:
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
        except ImportError:
            # matplotlib comes with the `local` extra, which a production image leaves out.
            raise click.BadParameter(
                "drawing needs matplotlib: install scheduled-images[local]"
            ) from None
    if value is not None and value.suffix:
        formats = FigureCanvasAgg.get_supported_filetypes()
        if value.suffix[1:].lower() not in formats:
            raise click.BadParameter(
                f"cannot draw a {value.suffix!r} file; name one ending in .png, or one of "
                f"{', '.join('.' + f for f in sorted(formats))}"
            )
    return value


@click.command("simulate")
@click.option(
    "--fleet",
    "fleet_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV: server_id,tenant_id,day_of_week,expected_duration_s.",
)
@click.option(
    "--capacity",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    callback=_finite,
    help="The cap: image creations in flight at once.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_in_a_writable_folder,
    help="Where to write the plan, CSV: server_id,slot_s.",
)
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_plot_path,
    help="Also draw the planned load over the week to this PNG.",
)
@click.option(
    "--noise",
    default=NOISE,
    show_default=True,
    type=click.FloatRange(min=0),
    callback=_finite,
    help="Log-sd of the images' real durations around their expected ones, in the replay.",
)
@click.option(
    "--weeks",
    default=WEEKS,
    show_default=True,
    type=click.IntRange(min=0, max=52),
    help="Weeks the plan is replayed for (0: no replay).",
)
def simulate(
    fleet_path: Path,
    capacity: float,
    out_path: Path,
    plot_path: Path | None,
    noise: float,
    weeks: int,
) -> None:
    """Plan a fleet file offline: print the planned peak against the lower bound and the
    share of weekly schedules on their chosen day; write the slots; optionally plot. Then
    replay the plan with noisy durations under the cap, beside the random-hour plan."""
    fleet = read_fleet(fleet_path)
    size = fleet.duration_s.size
    current = np.full(size, -1, dtype=np.int64)
    report = PlanningReport(bar=size >= PROGRESS_FROM)
    try:
        plan = rebalance(
            fleet.day_of_week,
            fleet.duration_s,
            fleet.tenant_id,
            current,
            capacity,
            observer=report,
        )
    finally:
        report.close()
    write_plan(out_path, fleet.server_id, plan.slot_s)
    if plot_path is not None:
        plot_load(plot_path, fleet, plan)
    weekly = int((fleet.day_of_week != DAILY).sum())
    click.echo(f"schedules:              {size:,} ({size - weekly:,} daily, {weekly:,} weekly)")
    click.echo(f"cap:                    {capacity:g}")
    click.echo(f"planned peak in flight: {plan.peak:.0f}")
    click.echo(f"lower bound:            {plan.lower_bound:.0f}")
    click.echo(f"peak / lower bound:     {plan.peak_over_bound:.3f}")
    click.echo(
        f"daily laid flat:        no plan keeping daily images level over the day peaks "
        f"below {plan.daily_flat_bound:.1f}"
    )
    click.echo(
        f"weekly on chosen day:   {plan.on_day_share:.1%} "
        f"(most the cap allows: {plan.max_on_day_share:.1%})"
    )
    click.echo(
        f"tenant stacking:        at most {plan.tenant_stacking} runs of one tenant "
        f"start on one minute"
    )
    click.echo(f"why the bound:          {plan.lower_bound_explanation}")
    if plan.peak > capacity:
        verdict = (
            "the cap is below what any plan can do"
            if capacity < plan.lower_bound
            else "the plan goes over the cap"
        )
        click.echo(f"warning: {verdict}", err=True)
    click.echo(f"plan written to {out_path}" + (f", plot to {plot_path}" if plot_path else ""))
    if weeks:
        _echo_replay(fleet, plan.slot_s, capacity, noise, weeks)


def _echo_replay(
    fleet: Fleet, slot_s: np.ndarray, capacity: float, noise: float, weeks: int
) -> None:
    """How late images start when the plan, and the random-hour plan, are replayed."""
    cap = int(math.floor(capacity + 1e-9))
    click.echo(
        f"replay:                 {weeks} weeks, durations noisy (log-sd {noise:g}), at most "
        f"{cap} in flight, places in admission's order"
    )
    for name, slots in (
        ("this plan", slot_s),
        ("random hour (QonoS)", random_hour_slots(fleet.day_of_week)),
    ):
        runs = runs_of(fleet.day_of_week, fleet.duration_s, fleet.tenant_id, slots, weeks, noise)
        late = delays(runs, cap)
        click.echo(f"  {name + ':':<21} start delay {late.line()}")
        click.echo(
            f"  {'':<21} headroom: images may run {headroom(runs, cap):.2f} x their expected "
            f"time on average before the p99 delay passes an hour"
        )
