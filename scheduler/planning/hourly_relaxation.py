"""The lowest peak any plan could have, from an LP over the hours of the week.

Every plan has, in each hour, a mean number in flight no higher than its peak. A run of L minutes
starting at minute s adds to each hour the share of that hour it is in flight. As s moves, that
share changes linearly between two kinds of points: where the run starts on the hour, and where
it ends on the hour. So whatever start a plan gives a run, its hourly shares are a mix of the
shares at the two such points around it, and an LP choosing how many runs of each kind start at
each such point, anywhere their window allows, can match every plan's hourly means. The least
busiest-hour mean it can reach is a lower bound on every plan's peak.

Runs are grouped by their day and a length class, rounded down (exact up to an hour, then in
steps of 2%), which keeps the LP small at any fleet size and only weakens the bound. The LP's
weights on its hours (its duals) then give back most of what rounding took: with them, every
run's own length and every start its window allows are priced in one pass, nearly as tight as
the LP on whole lengths and several times faster (README.md has the figures). The same LP with
daily runs' hourly load held flat says how low a plan that lays daily runs flat can go.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import OptimizeResult, OptimizeWarning, linprog

from scheduler.planning.week import (
    DAILY,
    DAY_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    window_first_bin,
)

# scipy hands HiGHS the options it does not know itself, verbatim, and warns that it does. A
# filter for good, not one around each solve: LPs are solved in two threads at once, and
# catch_warnings, not thread-safe, would let one thread's restore the other's warnings.
warnings.filterwarnings(
    "ignore", message="Unrecognized options detected: {'run_crossover'", category=OptimizeWarning
)

HOUR = 60  # minutes
HOURS = WEEK_BINS // HOUR
EXACT_UP_TO = 60  # lengths (minutes) kept exact; longer ones are rounded down ...
CLASS_RATIO = 1.02  # ... to a class at most this much shorter


@dataclass(frozen=True)
class RelaxedBound:
    value: float  # no plan's peak is lower
    daily_flat: float  # no plan whose daily runs keep the same load in every hour does better


def length_classes(lengths: np.ndarray) -> np.ndarray:
    """Each length (minutes) rounded down to its class."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = lengths.copy()
    long = lengths > EXACT_UP_TO
    steps = np.floor(np.log(lengths[long] / EXACT_UP_TO) / np.log(CLASS_RATIO))
    # A whole number of minutes at or above the class's start is still at most the length.
    out[long] = np.minimum(lengths[long], np.ceil(EXACT_UP_TO * CLASS_RATIO**steps - 1e-9))
    return out


def hourly_shares(starts: np.ndarray, length: int, period: int) -> sparse.coo_matrix:
    """(hour of the period, start) → share of that hour a run of `length` minutes starting at
    each start (minutes) is in flight, the period wrapping."""
    starts = np.asarray(starts, dtype=np.int64)
    touched = (length + HOUR - 1) // HOUR + 1
    hours = starts[:, None] // HOUR + np.arange(touched)[None, :]
    inside = np.minimum(starts[:, None] + length, (hours + 1) * HOUR) - np.maximum(
        starts[:, None], hours * HOUR
    )
    share = np.clip(inside, 0, None).ravel() / HOUR
    rows = (hours % (period // HOUR)).ravel()
    cols = np.repeat(np.arange(starts.size), touched)
    keep = share > 0
    return sparse.coo_matrix(
        (share[keep], (rows[keep], cols[keep])), shape=(period // HOUR, starts.size)
    )


def _turning_points(first: int, span: int, length: int) -> np.ndarray:
    """Starts in [first, first + span] where a run starts or ends on the hour."""
    on_hour = first + np.arange(0, span + 1, HOUR)
    ends_on_hour = first + np.arange(HOUR, span + HOUR, HOUR) - length % HOUR
    points = np.unique(np.concatenate((on_hour, ends_on_hour)))
    return points[(points >= first) & (points <= first + span)]


def _day_length_groups(days: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct (day, length) pairs as two rows, by day and then length; how many runs
    each): one key per run, a whole number, sorted far faster than pairs are."""
    key = (days.astype(np.int64) - DAILY) * (WEEK_BINS + 1) + lengths.astype(np.int64)
    values, counts = np.unique(key, return_counts=True)
    return np.stack((values // (WEEK_BINS + 1) + DAILY, values % (WEEK_BINS + 1))), counts


def _system(
    days: np.ndarray, lengths: np.ndarray, with_daily: bool
) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
    """(hourly load per column, group membership per column, schedules per group)."""
    classes = length_classes(lengths)
    keys, counts = _day_length_groups(days, classes)
    blocks, sizes = [], []
    for (day, length), count in zip(keys.T.tolist(), counts.tolist(), strict=True):
        if day == DAILY:
            if not with_daily:
                continue
            starts = _turning_points(0, DAY_BINS - 1, length) % DAY_BINS
            per_day = hourly_shares(np.unique(starts), length, DAY_BINS).tocsr()
            blocks.append(sparse.vstack([per_day] * 7))
        else:
            starts = _turning_points(window_first_bin(day), WINDOW_BINS, length) % WEEK_BINS
            blocks.append(hourly_shares(starts, length, WEEK_BINS).tocsr())
        sizes.append((blocks[-1].shape[1], count))
    load = sparse.hstack(blocks).tocsr() if blocks else sparse.csr_matrix((HOURS, 0))
    group = np.repeat(np.arange(len(sizes)), [columns for columns, _ in sizes])
    membership = sparse.csr_matrix(
        (np.ones(group.size), (group, np.arange(group.size))), shape=(len(sizes), group.size)
    )
    return load, membership, np.array([count for _, count in sizes], dtype=np.float64)


def lowest_peak(
    load: sparse.csr_matrix,
    membership: sparse.csr_matrix,
    counts: np.ndarray,
    base: np.ndarray | None = None,
) -> float:
    """min P such that load @ x + base <= P on every row, with every group's runs placed
    (membership @ x == counts, x >= 0). One more variable: the peak itself."""
    return lowest_peak_and_starts(load, membership, counts, base).value


@dataclass(frozen=True)
class LowestPeak:
    value: float
    starts: np.ndarray  # the x that reaches it
    weights: np.ndarray  # the LP's duals on its rows: how much the peak owes to each one


def lowest_peak_and_starts(
    load: sparse.csr_matrix,
    membership: sparse.csr_matrix,
    counts: np.ndarray,
    base: np.ndarray | None = None,
    tie_break: np.ndarray | None = None,
    time_limit_s: float = np.inf,
    interior: bool = False,
    iterations: int | None = None,
) -> LowestPeak:
    """`lowest_peak`, and the x that reaches it; of those, one with the least `tie_break` @ x,
    a cost the caller keeps far below a run of the peak. `interior` and `iterations` as for
    `solve`."""
    rows, columns = load.shape
    base = np.zeros(rows) if base is None else base
    if columns == 0:
        return LowestPeak(float(base.max()) if base.size else 0.0, np.zeros(0), np.zeros(rows))
    tie_break = np.zeros(columns) if tie_break is None else tie_break
    result = solve(
        np.concatenate((tie_break, [1.0])),
        sparse.hstack([load, -np.ones((rows, 1))]).tocsr(),
        -base,
        sparse.hstack([membership, sparse.csr_matrix((membership.shape[0], 1))]).tocsr(),
        counts,
        time_limit_s,
        interior,
        iterations,
    )
    if result.status != 0:
        raise RuntimeError(f"lowest-peak LP failed: {result.message}")
    return LowestPeak(float(result.x[-1]), result.x[:-1], -result.ineqlin.marginals)


def solve(
    cost: np.ndarray,
    a_ub: sparse.csr_matrix,
    b_ub: np.ndarray,
    a_eq: sparse.csr_matrix,
    b_eq: np.ndarray,
    time_limit_s: float = np.inf,
    interior: bool = False,
    iterations: int | None = None,
) -> OptimizeResult:
    """min cost @ x with a_ub @ x <= b_ub, a_eq @ x == b_eq, x >= 0, by HiGHS.

    `interior`: its interior point method, without the crossover to a vertex. On the on-day
    LP it is several times faster than the simplex, and the crossover, which adds nothing a
    plan needs, is what stalls on some large fleets. `iterations` bounds the solve's work
    (status 1 when reached); `time_limit_s` is a safety limit only. Both methods run serially
    in HiGHS by default, so the same LP gives the same answer on any machine short of that
    limit.
    """
    options: dict[str, object] = {"time_limit": time_limit_s, "maxiter": iterations}
    if interior:
        options["run_crossover"] = "off"
    return linprog(
        cost,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=(0, None),
        method="highs-ipm" if interior else "highs",
        options=options,
    )


def whole_lengths_bound(days: np.ndarray, lengths: np.ndarray, weights: np.ndarray) -> float:
    """A bound from weights on the hours of the week (>= 0, any scale): every plan's peak is at
    least the weighted mean of its hourly means, and that mean is the sum over runs of what each
    adds to it, at least what the run adds from its cheapest start. Each run's own length and
    every minute its window allows, where the LP rounds lengths down to classes and is too large
    to solve at whole minutes: with the LP's own weights, this is as tight as that LP would be.
    """
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if weights.sum() <= 0 or lengths.size == 0:
        return 0.0
    per_minute = np.repeat(weights / weights.sum(), HOUR) / HOUR
    # Two weeks end to end: every span from any start in the first ends inside them.
    running = np.concatenate(([0.0], np.cumsum(np.tile(per_minute, 2))))
    minutes, window = np.arange(WEEK_BINS), np.arange(WINDOW_BINS)
    keys, counts = _day_length_groups(days, lengths)
    total = 0.0
    for length in np.unique(keys[1]).tolist():
        cost = running[minutes + length] - running[minutes]  # a run starting at each minute
        daily_cost = cost.reshape(7, DAY_BINS).sum(axis=0)  # a daily run: the same every day
        of_length = keys[1] == length
        for day, count in zip(keys[0][of_length].tolist(), counts[of_length].tolist(), strict=True):
            if day == DAILY:
                cheapest = daily_cost.min()
            else:
                cheapest = cost[(window_first_bin(day) + window) % WEEK_BINS].min()
            total += count * float(cheapest)
    return total


def relaxed_bound(days: np.ndarray, lengths: np.ndarray) -> RelaxedBound:
    """The hourly LP's lowest peak for runs of `lengths` minutes (days DAILY for daily runs),
    raised by its hour weights on whole lengths (`whole_lengths_bound`), and the same LP with
    daily runs laid flat."""
    days = np.asarray(days)
    lengths = np.clip(np.asarray(lengths, dtype=np.int64), 1, WEEK_BINS)
    daily = days == DAILY
    load, membership, counts = _system(days, lengths, with_daily=True)
    lowest = lowest_peak_and_starts(load, membership, counts)
    value = max(lowest.value, whole_lengths_bound(days, lengths, lowest.weights))
    flat = np.full(HOURS, lengths[daily].sum() / DAY_BINS)
    load, membership, counts = _system(days[~daily], lengths[~daily], with_daily=False)
    # Laying daily runs flat only narrows the plans: a bound for them all holds for these too.
    return RelaxedBound(value, max(value, lowest_peak(load, membership, counts, flat)))
