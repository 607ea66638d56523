"""How much weekly work could stay on its chosen day under a cap: a small LP over the week.

Schedules are grouped by day and by duration class; the LP chooses how many of each group start
in each half-hour (evenly over its minutes; or each period of a finer `StartGrid`), daily groups
the same on every day, weekly groups on their day or in their window's edges, so that the load at
every fifth minute (or the grid's instants) stays under the cap, and keeps as many weekly
schedules on their day as it can. Counting schedules rather than work, it spills the longest ones
first: moving one long run frees the most room.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from scheduler.planning.hourly_relaxation import lowest_peak_and_starts, solve
from scheduler.planning.week import DAILY, as_day_array, duration_bins

HOURS = 168
#: Interior point iterations the solve for the lowest cap with the most runs on their day may
#: take before the plain solve is used instead: counted, not timed, so that which of the two
#: answers does not depend on the machine's speed.
TIE_BREAK_ITERATIONS = 400
DAILY_CLASSES = 6
# HiGHS's interior point method first (see `solve`), its simplex if that runs out of time.
INTERIOR_FIRST = (True, False)


@dataclass(frozen=True)
class StartGrid:
    """The LP's runs start evenly over periods of `start_min` minutes (dividing a day), and it
    bounds the load at instants `sample_min` minutes apart (dividing `start_min`). Each day's
    weekly runs fall into `weekly_classes` classes of length, whose runs start alike."""

    start_min: int
    sample_min: int = 5
    # 24, not 12: a class's long runs then need not start with its short ones, and a day's
    # longest can start near its window's end; it lowers the lowest cap most where lengths
    # spread widely, for twice the solve time.
    weekly_classes: int = 24

    @property
    def periods(self) -> int:
        return HOURS * 60 // self.start_min

    @property
    def per_day(self) -> int:
        return self.periods // 7

    @property
    def per_period(self) -> int:  # instants per period
        return self.start_min // self.sample_min

    @property
    def rows(self) -> int:
        return self.periods * self.per_period


# Half-hours, not hours: a busy window's longest runs can start nearer its end, which lowers the
# LP's lowest cap and the planner's peak below the bound. Finer periods lower it further, but
# take longer to solve, and the plans of small fleets then keep fewer runs on their day than the
# LP: the planner asks for them only where half-hours cannot meet the cap. Finer periods need
# closer instants too, else the LP crowds short runs between the instants and its plan is
# realised well above its cap.
HALF_HOURS = StartGrid(30)


@dataclass(frozen=True)
class OnDayLimit:
    """The LP's answer: the share of weekly schedules it keeps on their day, and per group."""

    share: float
    cap: float  # the cap the LP met: the one asked for, or the lowest it could reach
    feasible: bool  # whether the asked cap could be met at all at the LP's resolution
    weekly_class: np.ndarray  # duration class of each weekly schedule (-1 for daily ones)
    daily_class: np.ndarray  # duration class of each daily schedule (-1 for weekly ones)
    # (day or -1 for daily, class, part) → schedules starting in each period of the grid's
    # week, where part is "on", "before", "after" or "daily" (a daily class's starts on one
    # day, Monday)
    start_periods: dict[tuple[int, int, str], np.ndarray] = field(default_factory=dict)
    lowest: float = float("nan")  # the lowest cap the LP can meet, found or given
    grid: StartGrid = HALF_HOURS


def _kernel(lengths_min: np.ndarray, grid: StartGrid) -> np.ndarray:
    """Share of a group's runs in flight at each sampled instant after the start of the period
    they start in, starting evenly over its minutes. Instants, not means: a mean would let many
    long runs start at the end of a period, in flight together at its end. The instants are the
    last minute of each `sample_min` (…:04, …:29 on half-hours): the runs starting in a period
    pile up until its last minute. The group's own mix of lengths, not its mean: the LP leans on
    where runs end."""
    values, counts = np.unique(
        np.maximum(1, np.round(lengths_min)).astype(np.int64), return_counts=True
    )
    starts = np.arange(grid.start_min)
    folded = np.zeros(grid.rows)
    for length, count in zip(values.tolist(), counts.tolist(), strict=True):
        step = grid.sample_min
        instants = np.arange(step - 1, grid.start_min + length + step, step)
        flying = (
            (instants[None, :] >= starts[:, None]) & (instants[None, :] < starts[:, None] + length)
        ).mean(axis=0)
        np.add.at(folded, np.arange(instants.size) % grid.rows, flying * count)
    return folded / counts.sum()


def _classes(lengths: np.ndarray, count: int) -> np.ndarray:
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, count + 1)[1:-1]))
    return np.searchsorted(edges, lengths, side="right")


@dataclass
class _Columns:
    grid: StartGrid
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, periods: np.ndarray, kernel: np.ndarray, repeat_daily: bool) -> np.ndarray:
        offsets = np.flatnonzero(kernel)
        grid = self.grid
        shifts = np.arange(7) * grid.per_day if repeat_daily else np.zeros(1, dtype=np.int64)
        ids = self.count + np.arange(periods.size)
        for shift in shifts:
            rows = ((periods[:, None] + shift) * grid.per_period + offsets[None, :]) % grid.rows
            self.rows.append(rows.ravel())
            self.cols.append(np.repeat(ids, offsets.size))
            self.vals.append(np.tile(kernel[offsets], periods.size))
        self.count += periods.size
        return ids


@dataclass(frozen=True)
class _OnDayLP:
    """The LP's matrices: the load at each instant per column, each group's runs all placed,
    and -1 per run on its day (to be made least); which columns start where."""

    load: sparse.csr_matrix
    a_eq: sparse.csr_matrix
    b_eq: np.ndarray
    objective: np.ndarray
    on_ids: np.ndarray  # the columns of runs on their day
    # (day or DAILY, class, part) → (its columns, the periods they start in)
    periods_of: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]]
    weekly: int  # weekly schedules


def on_day_limit(
    day_of_week: np.ndarray | list[int | None],
    duration_s: np.ndarray | list[float],
    cap: float | None,
    lowest: float | None = None,
    grid: StartGrid = HALF_HOURS,
    deadline: float = math.inf,
) -> OnDayLimit:
    """Solve the LP; when the cap cannot be met, or is None, use the lowest cap the LP can
    meet instead. `lowest`, that cap if an earlier solve for the same fleet and grid found it.
    Its solves run to the end; `deadline` (monotonic), a safety limit, stops them sooner, with
    RuntimeError."""

    def time_left() -> float:
        left = deadline - time.monotonic()
        if left < 1.0:
            raise RuntimeError("on-day LP failed: no time left")
        return left

    days = as_day_array(day_of_week)
    lengths = duration_bins(duration_s).astype(np.float64)
    weekly = days != DAILY
    weekly_class = np.full(days.size, -1, dtype=np.int64)
    weekly_class[weekly] = _classes(lengths[weekly], grid.weekly_classes)
    daily_class = np.full(days.size, -1, dtype=np.int64)
    daily_class[~weekly] = _classes(lengths[~weekly], DAILY_CLASSES)
    lp = _build(days, lengths, weekly_class, daily_class, grid)
    if lp is None:
        return OnDayLimit(1.0, cap or 0.0, True, weekly_class, daily_class, grid=grid)
    # Asking HiGHS for the lowest reachable cap first is much faster than letting it prove a
    # too-low cap infeasible.
    starts_at_lowest = None
    if lowest is None:
        lowest, starts_at_lowest = _lowest_cap(lp, time_left)
    feasible = cap is not None and cap >= lowest
    if not feasible and starts_at_lowest is not None:
        x, used_cap = starts_at_lowest, lowest
    else:
        used_cap = float(cap) if feasible and cap is not None else lowest * (1 + 1e-9) + 1e-9
        x = _starts_under(lp, used_cap, grid, time_left)
    start_periods = {}
    for key, (ids, periods) in lp.periods_of.items():
        start_periods[key] = np.zeros(grid.periods)
        start_periods[key][periods] = np.maximum(x[ids], 0.0)
    share = float(x[lp.on_ids].sum()) / lp.weekly if lp.weekly else 1.0
    return OnDayLimit(
        # The interior point is exact to its tolerance, not to the last bit: 0.99999999997.
        share=round(min(1.0, share), 6),
        cap=used_cap,
        feasible=feasible,
        weekly_class=weekly_class,
        daily_class=daily_class,
        start_periods=start_periods,
        lowest=lowest,
        grid=grid,
    )


def _build(
    days: np.ndarray,
    lengths: np.ndarray,
    weekly_class: np.ndarray,
    daily_class: np.ndarray,
    grid: StartGrid,
) -> _OnDayLP | None:
    """The LP for runs of `lengths` minutes in their classes; None with no runs at all."""
    weekly = days != DAILY
    columns = _Columns(grid)
    per_day = grid.per_day
    equalities: list[tuple[np.ndarray, float]] = []
    on_columns: dict[tuple[int, int], np.ndarray] = {}
    periods_of: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]] = {}
    half = per_day // 2  # the window's edges: 12 hours either side
    for day in range(7):
        for cls in np.unique(weekly_class[weekly & (days == day)]):
            members = weekly & (days == day) & (weekly_class == cls)
            kernel = _kernel(lengths[members], grid)
            own = per_day * day + np.arange(per_day)
            on = columns.add(own, kernel, False)
            edges = np.concatenate((np.arange(-half, 0), np.arange(per_day, per_day + half)))
            edges = (per_day * day + edges) % grid.periods
            off = columns.add(edges, kernel, False)
            on_columns[(day, int(cls))] = on
            periods_of[(day, int(cls), "on")] = (on, own)
            periods_of[(day, int(cls), "before")] = (off[:half], edges[:half])
            periods_of[(day, int(cls), "after")] = (off[half:], edges[half:])
            equalities.append((np.concatenate((on, off)), float(members.sum())))
    for cls in np.unique(daily_class[~weekly]):
        members = daily_class == cls
        ids = columns.add(np.arange(per_day), _kernel(lengths[members], grid), True)
        equalities.append((ids, float(members.sum())))
        periods_of[(DAILY, int(cls), "daily")] = (ids, np.arange(per_day))
    if columns.count == 0:
        return None
    return _matrices(columns, equalities, on_columns, periods_of, int(weekly.sum()))


def _matrices(
    columns: _Columns,
    equalities: list[tuple[np.ndarray, float]],
    on_columns: dict[tuple[int, int], np.ndarray],
    periods_of: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]],
    weekly: int,
) -> _OnDayLP:
    load = sparse.csr_matrix(
        (
            np.concatenate(columns.vals),
            (np.concatenate(columns.rows), np.concatenate(columns.cols)),
        ),
        shape=(columns.grid.rows, columns.count),
    )
    eq_rows = np.concatenate([np.full(ids.size, i) for i, (ids, _) in enumerate(equalities)])
    eq_cols = np.concatenate([ids for ids, _ in equalities])
    a_eq = sparse.csr_matrix(
        (np.ones(eq_cols.size), (eq_rows, eq_cols)), shape=(len(equalities), columns.count)
    )
    b_eq = np.array([n for _, n in equalities])
    on_ids = np.concatenate(list(on_columns.values())) if on_columns else np.zeros(0, int)
    objective = np.zeros(columns.count)
    objective[on_ids] = -1.0
    return _OnDayLP(load, a_eq, b_eq, objective, on_ids, periods_of, weekly)


def _lowest_cap(lp: _OnDayLP, time_left: Callable[[], float]) -> tuple[float, np.ndarray]:
    """(the lowest cap the LP can meet, its starts there), with the most runs on their day at
    that cap, in the same solve: worth a twentieth of a run of the peak in all, they cannot
    raise it by more. A fleet whose lowest cap many plans share can make that slow
    (TIE_BREAK_ITERATIONS): then the plain solve."""
    tie_break = lp.objective * 0.05 / max(lp.weekly, 1)
    try:
        found = lowest_peak_and_starts(
            lp.load,
            lp.a_eq,
            lp.b_eq,
            tie_break=tie_break,
            time_limit_s=time_left(),
            interior=True,
            iterations=TIE_BREAK_ITERATIONS,
        )
    except RuntimeError:
        found = lowest_peak_and_starts(lp.load, lp.a_eq, lp.b_eq, time_limit_s=time_left())
    return found.value, found.starts


def _starts_under(
    lp: _OnDayLP, cap: float, grid: StartGrid, time_left: Callable[[], float]
) -> np.ndarray:
    """The starts keeping the most runs on their day with the load under `cap`."""
    for interior in INTERIOR_FIRST:
        result = solve(
            lp.objective,
            lp.load,
            np.full(grid.rows, cap),
            lp.a_eq,
            lp.b_eq,
            time_left(),
            interior,
        )
        if result.status == 0:
            return result.x
    raise RuntimeError(f"on-day LP failed: {result.message}")


def max_on_day_share(
    day_of_week: np.ndarray | list[int | None],
    duration_s: np.ndarray | list[float],
    cap: float,
) -> float:
    """The largest share of weekly schedules that could run on their chosen day under the cap
    (at half-hour resolution; when the cap cannot be met, under the lowest peak that can)."""
    return on_day_limit(day_of_week, duration_s, cap).share
