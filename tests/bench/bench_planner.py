"""Benchmark of the planner against two baselines on skewed fleets.

Each plan is also replayed (`scheduler.replay`) for three weeks, durations noisy, the cap held
in admission's order: the 99th percentile start delay under noise 0.6, and the headroom (how
much slower than expected images may run before that delay passes an hour, under noise 0.3),
beside the same figures for the random-hour plan the public service's scheduler made.

With `--strategies SIZES`, it weighs each of the planner's strategies instead: each fleet and
cap is planned whole and then with one strategy left out at a time, and the rows say where the
peak, the share on their day or the p99 delay changes; a strategy that changes none of them is
named at the end.

Run from the project root: `python -m tests.bench.bench_planner [--sizes 10000,100000,1000000]`
or `python -m tests.bench.bench_planner --strategies 5000,20000`.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from scheduler.planning import (
    DAILY,
    LoadProfile,
    PlanResult,
    lower_bound,
    on_day_share,
    planned_load,
    rebalance,
)
from scheduler.planning.context import STRATEGIES
from scheduler.replay import delays, headroom, random_hour_slots, runs_of

T = TypeVar("T")

# Weekly schedules per day, Monday first: a third on Sunday, Saturday next, as users pick.
DAY_WEIGHTS = np.array([0.09, 0.07, 0.07, 0.08, 0.11, 0.25, 0.33])
DAILY_SHARE = 0.3


@dataclass(frozen=True)
class Fleet:
    day_of_week: np.ndarray
    duration_s: np.ndarray
    tenant_id: np.ndarray


def make_fleet(size: int, seed: int = 4) -> Fleet:
    """A seeded fleet: 30% daily, weekly days skewed to the weekend, durations from two minutes
    to four hours (log-uniform), tenants of very unequal sizes."""
    rng = np.random.default_rng(seed)
    daily = rng.random(size) < DAILY_SHARE
    days = np.where(daily, DAILY, rng.choice(7, size, p=DAY_WEIGHTS / DAY_WEIGHTS.sum()))
    durations = np.round(np.exp(rng.uniform(np.log(120), np.log(4 * 3600), size)))
    tenants = rng.zipf(1.6, size) % max(10, size // 50)
    return Fleet(days.astype(np.int8), durations, tenants)


def random_slots(fleet: Fleet, rng: np.random.Generator) -> np.ndarray:
    """Baseline (a): a random hour and minute per schedule, weekly ones on their day."""
    return random_hour_slots(fleet.day_of_week, int(rng.integers(1 << 31)))


def midnight_slots(fleet: Fleet, rng: np.random.Generator) -> np.ndarray:
    """Baseline (b): everyone at midnight with up to an hour of jitter."""
    jitter = rng.integers(0, 3600, fleet.day_of_week.size)
    return np.where(
        fleet.day_of_week == DAILY, jitter, fleet.day_of_week.astype(np.int64) * 86400 + jitter
    )


def measure(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    """(result, seconds, peak MiB allocated while running)."""
    tracemalloc.start()
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak / 2**20


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """(result, seconds), without tracemalloc, which slows Python-heavy code severalfold."""
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def time_place(fleet: Fleet, slots: np.ndarray, cap: float, count: int = 2000) -> list[float]:
    """Microseconds per incremental placement into a profile holding the whole fleet."""
    profile = LoadProfile.from_schedules(
        fleet.day_of_week, slots, fleet.duration_s, fleet.tenant_id
    )
    rng = np.random.default_rng(7)
    timings = []
    for _ in range(count):
        day = None if rng.random() < DAILY_SHARE else int(rng.integers(0, 7))
        duration = float(rng.uniform(120, 4 * 3600))
        tenant = int(rng.integers(0, 1000))
        started = time.perf_counter()
        slot = profile.place(day, duration, tenant, cap)
        timings.append((time.perf_counter() - started) * 1e6)
        profile.remove(day, slot, duration, tenant)
    return timings


#: The planner's caps, as multiples of the bound; memory is measured on the tight one.
PLANNER_RUNS = (
    ("planner, cap = bound", 1.0),
    ("planner, tight cap", 1.03),
    ("planner, cap 1.1 x LB", 1.10),
    ("planner, roomy cap", 1.25),
    ("planner, cap < bound", 0.9),
)
TIGHT = 1.03
#: Fleets up to this size are replayed: a million schedules make ten million runs.
REPLAY_UP_TO = 100_000
#: The noise of the delays' replay (the headroom's is the replay's default).
DELAY_NOISE = 0.6


def replay_columns(fleet: Fleet, slots: np.ndarray, cap: float) -> str:
    """p99 delay (minutes, noise DELAY_NOISE), share over an hour late, headroom."""
    if fleet.day_of_week.size > REPLAY_UP_TO:
        return f"{'-':>6} {'-':>6} {'-':>5}"
    args = (fleet.day_of_week, fleet.duration_s, fleet.tenant_id, slots)
    late = delays(runs_of(*args, noise=DELAY_NOISE), int(cap))
    room = headroom(runs_of(*args), int(cap))
    return f"{late.p99_s / 60:>6.1f} {late.late_share:>6.2%} {room:>5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--strategies", default="", help="fleet sizes to weigh strategies on")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    if args.strategies:
        bench_strategies([int(s) for s in args.strategies.split(",") if s], args.seed)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]

    header = (
        f"{'fleet':>9} {'method':<22} {'cap/LB':>6} {'peak/LB':>7} {'peak<=cap':>9} "
        f"{'on day':>7} {'LP max':>7} {'time s':>7} {'MiB':>7} | {'p99 m':>6} {'>1h':>6} "
        f"{'room':>5} | random hour: {'p99 m':>6} {'>1h':>6} {'room':>5}"
    )
    print(header)
    print("-" * len(header))
    place_lines = []
    bound_lines = []
    for size in sizes:
        fleet = make_fleet(size, args.seed)
        bound, bound_line = _bounds(size, fleet)
        bound_lines.append(bound_line)
        tight_slots = _bench_planner(size, fleet, bound)
        _bench_baselines(size, fleet, bound, np.random.default_rng(args.seed))
        timings = np.array(time_place(fleet, tight_slots, np.floor(bound * TIGHT)))
        place_lines.append(
            f"{size:>9,}: place() mean {timings.mean():.0f} µs, "
            f"p99 {np.percentile(timings, 99):.0f} µs, max {timings.max():.0f} µs"
        )
    print()
    print("lower bounds (peak/LB above is against the larger of the two):")
    for line in bound_lines:
        print(line)
    print()
    print("incremental placement into a profile holding the whole fleet:")
    for line in place_lines:
        print(line)


def _bounds(size: int, fleet: Fleet) -> tuple[float, str]:
    """(the bound, a line on the bounds and how long the hourly one took)."""
    windows = lower_bound(fleet.day_of_week, fleet.duration_s).value
    # Timed without tracemalloc, which slows the LP's setup several times over.
    started = time.perf_counter()
    full = lower_bound(fleet.day_of_week, fleet.duration_s, hourly=True)
    bound_s = time.perf_counter() - started
    bound = full.value
    line = (
        f"{size:>9,}: windows {windows:,.1f}, hourly LP {full.hourly:,.1f} ({bound_s:.1f} s), "
        f"bound {bound:,.1f}; with daily runs laid flat no plan goes below "
        f"{full.daily_flat:,.1f} = {full.daily_flat / bound:.3f} x bound"
    )
    return bound, line


def _bench_planner(size: int, fleet: Fleet, bound: float) -> np.ndarray:
    """Print a row per planner cap; return the slots planned under the tight one."""
    none = np.full(size, -1)
    tight_slots = none
    for name, factor in PLANNER_RUNS:
        cap = np.floor(bound * factor)

        def plan_fleet(cap=cap, fleet=fleet, none=none):
            return rebalance(fleet.day_of_week, fleet.duration_s, fleet.tenant_id, none, cap)

        plan, elapsed = timed(plan_fleet)
        # Memory once per fleet, on the tight cap, which takes the most planning.
        mib = measure(plan_fleet)[2] if factor == TIGHT else float("nan")
        # The LP that judges the plan, solved beside it (and timed with it): the planner
        # uses it too, as the service's rebalance and `simulate` do.
        best = plan.max_on_day_share
        tight_slots = plan.slot_s if factor == TIGHT else tight_slots
        print(
            f"{size:>9,} {name:<22} {cap / bound:>6.3f} {plan.peak / bound:>7.3f} "
            f"{'yes' if plan.peak <= cap else 'NO':>9} {plan.on_day_share:>7.1%} "
            f"{best:>7.1%} {elapsed:>7.2f} {mib:>7.0f} | "
            f"{replay_columns(fleet, plan.slot_s, cap)} | {'':>13}"
            f"{replay_columns(fleet, random_hour_slots(fleet.day_of_week), cap)}",
            flush=True,
        )
    return tight_slots


def _bench_baselines(size: int, fleet: Fleet, bound: float, rng: np.random.Generator) -> None:
    """Print a row per baseline, against the tight cap."""
    for name, baseline in (
        ("random hour+minute", random_slots),
        ("midnight + 1h jitter", midnight_slots),
    ):
        slots, elapsed, mib = measure(
            lambda baseline=baseline, fleet=fleet, rng=rng: baseline(fleet, rng)
        )
        peak = planned_load(fleet.day_of_week, fleet.duration_s, slots).max()
        cap = np.floor(bound * TIGHT)
        print(
            f"{size:>9,} {name:<22} {cap / bound:>6.3f} {peak / bound:>7.3f} "
            f"{'yes' if peak <= cap else 'NO':>9} "
            f"{on_day_share(fleet.day_of_week, slots):>7.1%} {'':>7} "
            f"{elapsed:>7.2f} {mib:>7.0f}"
        )


#: The caps, as multiples of the bound, each strategy is weighed at.
STRATEGY_CAPS = (0.9, 1.0, 1.03, 1.1, 1.25)


@dataclass(frozen=True)
class Figures:
    """What a strategy may change: the peak, the share on their day (in tenths of a point) and
    the p99 start delay under noise DELAY_NOISE (in tenths of a minute)."""

    peak: float
    on_day: float
    p99_min: float

    def __str__(self) -> str:
        return f"peak {self.peak:g}, on day {self.on_day:.1f}%, p99 {self.p99_min:.1f} min"


def figures(fleet: Fleet, plan: PlanResult, cap: float) -> Figures:
    runs = runs_of(
        fleet.day_of_week, fleet.duration_s, fleet.tenant_id, plan.slot_s, noise=DELAY_NOISE
    )
    p99 = delays(runs, int(cap)).p99_s / 60
    return Figures(plan.peak, round(plan.on_day_share * 100, 1), round(p99, 1))


def plan_without(fleet: Fleet, cap: float, left_out: frozenset[str]) -> PlanResult:
    """The fleet planned from scratch under the cap, the `left_out` strategies left out."""
    none = np.full(fleet.day_of_week.size, -1)
    return rebalance(
        fleet.day_of_week, fleet.duration_s, fleet.tenant_id, none, cap, disabled=left_out
    )


def bench_strategies(sizes: list[int], seed: int) -> None:
    """Per fleet and cap, the whole planner's figures, then each strategy it came to left out:
    a row for each that changes them. Last, the strategies that changed nothing anywhere."""
    changed: dict[str, list[str]] = {name: [] for name in sorted(STRATEGIES)}
    for size in sizes:
        fleet = make_fleet(size, seed)
        bound = lower_bound(fleet.day_of_week, fleet.duration_s, hourly=True).value
        for factor in STRATEGY_CAPS:
            cap = float(np.floor(bound * factor))
            whole, elapsed = timed(partial(plan_without, fleet, cap, frozenset()))
            base = figures(fleet, whole, cap)
            print(f"{size:>9,} x{factor:<5g} cap {cap:g}: whole planner {base} ({elapsed:.0f} s)")
            for name in sorted(whole.strategies_reached):
                without, elapsed = timed(partial(plan_without, fleet, cap, frozenset({name})))
                other = figures(fleet, without, cap)
                if other != base:
                    changed[name].append(f"{size:,} x{factor:g}")
                print(
                    f"{'':>9} {'':<6} without {name:<18} "
                    f"{'changes: ' + str(other) if other != base else 'the same':<60} "
                    f"({elapsed:.0f} s)",
                    flush=True,
                )
    print()
    for name, where in changed.items():
        print(f"{name:<18} {'changes ' + ', '.join(where) if where else 'changes nothing'}")


if __name__ == "__main__":
    main()
