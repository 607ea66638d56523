"""The planner: a slot for every schedule of a fleet, keeping the in-flight load under the cap.

`rebalance` re-plans a whole fleet (arrays in, arrays out). Its aims, in order: the planned
load never above the cap (else the lowest peak it can reach); weekly schedules on their chosen
day where the load allows, else in their window, the longest ones leaving first since each
frees the most room; daily ones at one time every day; slots kept unless the load requires a
move; one tenant's schedules spread over different minutes.

How: an LP over hourly loads (`on_day_limit`) says how many schedules of each day and duration
class can stay on their day. Schedules whose current slot still fits keep it. The rest are
placed by water-filling at minute resolution, longest first, a layer at a time: each round puts
one run on every lowest, non-overlapping stretch of the group's allowed starts.
`LoadProfile.place` handles one schedule at a time between rebalances.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from common.slots import DAY_S, SPILL_S, WEEK_S
from scheduler.load_profile import (
    BIN_S,
    DAILY,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    LoadProfile,
    add_schedules,
    add_spans,
    as_day_array,
    cyclic_window_max,
    daily_fold,
    daily_starts,
    duration_bins,
    span_bins,
)
from scheduler.lower_bound import LowerBound, lower_bound
from scheduler.on_day_limit import OnDayLimit, max_on_day_share, on_day_limit

__all__ = [
    "LoadProfile",
    "PlanResult",
    "lower_bound",
    "max_on_day_share",
    "on_day_share",
    "planned_load",
    "rebalance",
]

# Where a slot lies: on the chosen day, on the window's edge before or after it, or daily.
ON_DAY, BEFORE, AFTER, DAILY_KIND = 1, 2, 3, 4


@dataclass(frozen=True)
class PlanResult:
    """A plan for a fleet and how good it is."""

    slot_s: np.ndarray  # per schedule: seconds after 00:00 (daily) or Monday 00:00 (weekly)
    moved: int  # schedules that had a slot and got another one
    peak: float  # the highest planned number in flight at any minute
    lower_bound: float  # the lowest peak any plan could have
    lower_bound_explanation: str
    on_day_share: float  # share of weekly schedules on their chosen day
    max_on_day_share: float  # the most the cap allows, from the hourly LP
    cap: float
    load: np.ndarray  # planned number in flight per minute of the week, Monday 00:00 first
    tenant_stacking: int  # most runs of one tenant starting on the same minute

    @property
    def peak_over_bound(self) -> float:
        return self.peak / self.lower_bound if self.lower_bound > 0 else float("nan")


def planned_load(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    slot_s: np.ndarray | Iterable[int],
) -> np.ndarray:
    """The number in flight per minute of the week for schedules at the given slots."""
    load = np.zeros(WEEK_BINS)
    add_schedules(
        load, as_day_array(day_of_week), np.asarray(slot_s), np.asarray(duration_s, float)
    )
    return load


def on_day_share(day_of_week: np.ndarray | Iterable[int | None], slot_s: np.ndarray) -> float:
    """Share of weekly schedules whose slot lies on their chosen day (1.0 with none)."""
    days = as_day_array(day_of_week)
    slots = np.asarray(slot_s, dtype=np.int64)
    weekly = days != DAILY
    if not weekly.any():
        return 1.0
    on = slots[weekly] // DAY_S == days[weekly]
    return float(on.mean())


def _current_kind(days: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Where each current slot lies: ON_DAY, BEFORE, AFTER, DAILY_KIND, or 0 (none)."""
    kind = np.zeros(days.size, dtype=np.int8)
    daily = days == DAILY
    kind[daily & (current >= 0) & (current < DAY_S)] = DAILY_KIND
    weekly = ~daily & (current >= 0) & (current < WEEK_S)
    offset = (current - days.astype(np.int64) * DAY_S) % WEEK_S
    kind[weekly & (offset < DAY_S)] = ON_DAY
    kind[weekly & (offset >= DAY_S) & (offset < DAY_S + SPILL_S)] = AFTER
    kind[weekly & (offset >= WEEK_S - SPILL_S)] = BEFORE
    return kind


def _choose_kinds(
    days: np.ndarray, lengths: np.ndarray, current_kind: np.ndarray, limit: OnDayLimit
) -> np.ndarray:
    """ON_DAY, BEFORE or AFTER for each weekly schedule, DAILY_KIND for daily ones.

    Each (day, duration class) keeps the LP's number on its day: those already on their day
    first, the shortest of them when too many are; then new ones; then ones brought back from
    the window's edge, the shortest first. The rest go to the edges in the LP's proportions,
    those already on an edge staying on it.
    """
    kind = np.full(days.size, DAILY_KIND, dtype=np.int8)
    weekly = days != DAILY
    groups = days.astype(np.int64) * 1000 + limit.weekly_class
    for key in np.unique(groups[weekly]):
        members = np.flatnonzero(weekly & (groups == key))
        cell = (int(key // 1000), int(key % 1000))
        quota = int(np.floor(limit.on_day.get(cell, 0.0) + 1e-6))
        cur = current_kind[members]
        rank = np.select([cur == ON_DAY, cur == 0], [0, 1], default=2)
        order = members[np.lexsort((lengths[members], rank))]
        kind[order[:quota]] = ON_DAY
        spilled = order[quota:]
        if spilled.size == 0:
            continue
        before, after = limit.before.get(cell, 0.0), limit.after.get(cell, 0.0)
        share = before / (before + after) if before + after > 0 else 0.5
        n_before = int(round(share * spilled.size))
        cur = current_kind[spilled]
        side_rank = np.select([cur == BEFORE, cur == AFTER], [0, 2], default=1)
        spilled = spilled[np.argsort(side_rank, kind="stable")]
        kind[spilled[:n_before]] = BEFORE
        kind[spilled[n_before:]] = AFTER
    return kind


def _evict_over_cap(
    load: np.ndarray,
    days: np.ndarray,
    slots: np.ndarray,
    durations: np.ndarray,
    keep: np.ndarray,
    cap: float,
) -> None:
    """Drop kept slots until the kept load fits under the cap, the longest runs first.

    Only schedules touching an overloaded minute are reconsidered; they are re-admitted one by
    one, shortest first, while they fit.
    """
    if load.max() <= cap:
        return
    start, length = span_bins(slots, durations)
    over = np.concatenate((load > cap, load > cap)).astype(np.int64)
    reach = np.concatenate(([0], np.cumsum(over)))
    daily = days == DAILY
    touches = np.zeros(days.size, dtype=bool)
    w = keep & ~daily
    touches[w] = reach[start[w] + np.minimum(length[w], WEEK_BINS)] - reach[start[w]] > 0
    d = np.flatnonzero(keep & daily)
    for day in range(7):
        first = start[d] + day * DAY_BINS
        touches[d] |= reach[first + np.minimum(length[d], WEEK_BINS)] - reach[first] > 0
    candidates = np.flatnonzero(touches)
    add_schedules(load, days[candidates], slots[candidates], durations[candidates], -1.0)
    keep[candidates] = False
    for i in candidates[np.argsort(length[candidates], kind="stable")]:
        repeats = 7 if days[i] == DAILY else 1
        firsts = start[i] + DAY_BINS * np.arange(repeats)
        covered = (firsts[:, None] + np.arange(length[i])[None, :]).ravel() % WEEK_BINS
        if load[covered].max() + 1 <= cap:
            np.add.at(load, covered, 1.0)
            keep[i] = True


_PHASES = np.random.default_rng(20240604)


def _spaced(candidates: np.ndarray, length: int, period: int | None) -> np.ndarray:
    """A subset of sorted start bins whose runs of `length` bins do not overlap."""
    if candidates.size <= 1:
        return candidates
    new_run = np.concatenate(([True], np.diff(candidates) > 1))
    run_of = np.cumsum(new_run) - 1
    firsts = candidates[new_run]
    run_length = np.diff(np.concatenate((np.flatnonzero(new_run), [candidates.size])))
    # A random phase per stretch, so that runs do not all start on the stretches' first
    # minutes: a crowd of starts on one minute would stack tenants there.
    phase = (_PHASES.random(firsts.size) * np.minimum(run_length, length)).astype(np.int64)
    shifted = candidates - firsts[run_of] - phase[run_of]
    picks = candidates[(shifted >= 0) & (shifted % length == 0)]
    if picks.size > 1:
        picks = picks[np.concatenate(([True], np.diff(picks) >= length))]
    if period is not None and picks.size > 1 and picks[-1] + length > picks[0] + period:
        picks = picks[:-1]
    return picks


def _fill_group(
    load: np.ndarray,
    day: int,
    kind: int,
    length: int,
    count: int,
    tolerance: float,
    cap: float = np.inf,
) -> np.ndarray:
    """Water-fill `count` identical runs into the load; return their slots in seconds.

    Each round puts one run on every stretch within `tolerance` of the lowest, as long as the
    runs do not overlap each other (then each raises the peak there by one only). A weekly run
    that would go over the cap where its kind puts it may go anywhere in its window instead.
    """
    placed: list[np.ndarray] = []
    remaining = count
    if kind == DAILY_KIND:
        width = min(length, DAY_BINS)
        while remaining > 0:
            highest = cyclic_window_max(daily_fold(load), 0, DAY_BINS, width)
            level = highest.min() + tolerance
            picks = _spaced(np.flatnonzero(highest <= level), width, DAY_BINS)
            picks = _thin(picks, remaining)
            add_spans(load, daily_starts(picks), length)
            placed.append(picks)
            remaining -= picks.size
        return np.concatenate(placed) * BIN_S
    first = (day * DAY_BINS - SPILL_BINS) % WEEK_BINS
    local = np.arange(WINDOW_BINS)
    on_day = (local >= SPILL_BINS) & (local < SPILL_BINS + DAY_BINS)
    allowed = {
        ON_DAY: on_day,
        BEFORE: local < SPILL_BINS,
        AFTER: local >= SPILL_BINS + DAY_BINS,
    }[kind]
    while remaining > 0:
        highest = cyclic_window_max(load, first, WINDOW_BINS, length)
        if highest[allowed].min() + 1 > cap and highest.min() < highest[allowed].min():
            allowed = np.ones(WINDOW_BINS, dtype=bool)
        highest = np.where(allowed, highest, np.inf)
        level = highest.min() + tolerance
        picks = _thin(_spaced(np.flatnonzero(highest <= level), length, None), remaining)
        add_spans(load, first + picks, length)
        placed.append((first + picks) % WEEK_BINS)
        remaining -= picks.size
    return np.concatenate(placed) * BIN_S


def _placement_order(
    days: np.ndarray, kind: np.ndarray, lengths: np.ndarray, durations: np.ndarray
) -> np.ndarray:
    """A sort key grouping identical runs, in the order their groups are placed.

    Daily runs go first: they are the same on every day, so they are best laid flat. Then the
    weekly runs day by day, the busiest day first, so that a busy day's runs can start late and
    carry on into the next, quieter day, whose own runs then fill in around them. Within a
    phase, the longest runs first.
    """
    weekly = days != DAILY
    weekly_work = np.bincount(days[weekly], weights=durations[weekly], minlength=7)
    phase_of_day = np.empty(7, dtype=np.int64)
    phase_of_day[np.argsort(-weekly_work, kind="stable")] = np.arange(1, 8)
    phase = np.where(days == DAILY, 0, phase_of_day[np.maximum(days, 0)])
    return (phase * WEEK_BINS * 2 + (WEEK_BINS - lengths)) * 8 + kind


def _thin(picks: np.ndarray, wanted: int) -> np.ndarray:
    """At most `wanted` of the picks, evenly spread."""
    if picks.size <= wanted:
        return picks
    return picks[np.linspace(0, picks.size - 1, wanted).round().astype(np.int64)]


def _spread_order(tenant_codes: np.ndarray, seed: int) -> np.ndarray:
    """An order of items in which each tenant's items are spread evenly from first to last."""
    rng = np.random.default_rng(seed)
    jitter = rng.random(tenant_codes.size)
    by_tenant = np.lexsort((jitter, tenant_codes))
    sorted_codes = tenant_codes[by_tenant]
    first_of = np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1]))
    group_start = np.flatnonzero(first_of)
    sizes = np.diff(np.concatenate((group_start, [tenant_codes.size])))
    group_of = np.cumsum(first_of) - 1
    rank = np.arange(tenant_codes.size) - group_start[group_of]
    position = np.empty(tenant_codes.size)
    offset = rng.random(group_start.size)
    position[by_tenant] = (rank + offset[group_of]) / sizes[group_of]
    return np.argsort(position, kind="stable")


def _tenant_stacking(days: np.ndarray, slots: np.ndarray, codes: np.ndarray) -> int:
    """The most runs of one tenant that start on the same minute of the week."""
    if days.size == 0:
        return 0
    minute = slots // BIN_S
    daily = days == DAILY
    week_minutes = np.concatenate((minute[~daily], daily_starts(minute[daily]))).astype(np.int64)
    owners = np.concatenate((codes[~daily], np.repeat(codes[daily], 7))).astype(np.int64)
    _, counts = np.unique(owners * WEEK_BINS + week_minutes, return_counts=True)
    return int(counts.max())


def rebalance(
    day_of_week: np.ndarray | Iterable[int | None],
    duration_s: np.ndarray | Iterable[float],
    tenant_id: np.ndarray | Iterable[Hashable],
    current_slot: np.ndarray | Iterable[int],
    cap: float,
    progress: Callable[[int], None] | None = None,
) -> PlanResult:
    """Re-plan a whole fleet. Arrays are per schedule; day_of_week holds None or -1 for daily
    schedules; current_slot holds -1 for a schedule without a slot yet.

    A schedule keeps its current slot when that slot still fits its kind (on its day or on the
    window's edge, as the LP's quota says) and the kept load stays under the cap; the others
    are placed by water-filling. `progress`, if given, is called with counts of schedules done.
    """
    days = as_day_array(day_of_week)
    durations = np.asarray(duration_s, dtype=np.float64)
    current = np.asarray(current_slot, dtype=np.int64)
    tenants = np.asarray(tenant_id)
    if not (days.size == durations.size == current.size == tenants.size):
        raise ValueError("all arrays must have one entry per schedule")
    if ((days < DAILY) | (days > 6)).any():
        raise ValueError("day_of_week must be None/-1 (daily) or 0..6")
    if (durations < 0).any() or not np.isfinite(durations).all():
        raise ValueError("expected durations must be finite and non-negative")
    _, codes = np.unique(tenants, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    lengths = duration_bins(durations)

    bound: LowerBound = lower_bound(days, durations)
    limit = on_day_limit(days, durations, cap)
    # The load is a whole number at every moment: the cap it must stay under is the cap
    # rounded down, or when no plan meets it, the lowest peak reachable.
    if cap >= bound.value and limit.feasible:
        target = float(np.floor(cap + 1e-9))
    else:
        target = float(np.ceil(max(bound.value, limit.cap, cap) - 1e-9))

    current_kind = _current_kind(days, current)
    kind = _choose_kinds(days, lengths, current_kind, limit)
    keep = (current_kind == kind) & (current_kind != 0)
    slots = np.where(keep, current, -1)
    load = np.zeros(WEEK_BINS)
    add_schedules(load, days[keep], slots[keep], durations[keep])
    _evict_over_cap(load, days, slots, durations, keep, target)
    slots[~keep] = -1
    if progress is not None:
        progress(int(keep.sum()))

    todo = np.flatnonzero(~keep)
    group_key = _placement_order(days, kind, lengths, durations)[todo]
    order = np.argsort(group_key, kind="stable")
    todo, group_key = todo[order], group_key[order]
    groups = np.split(todo, np.flatnonzero(np.diff(group_key)) + 1) if todo.size else []
    for members in groups:
        i = members[0]
        if days[i] == DAILY:
            group_slots = _fill_group(load, DAILY, DAILY_KIND, int(lengths[i]), members.size, 0.0)
        else:
            group_slots = _fill_group(
                load, int(days[i]), int(kind[i]), int(lengths[i]), members.size, 0.0
            )
        spread = members[_spread_order(codes[members], seed=int(i) & 0xFFFF)]
        slots[spread] = np.sort(group_slots)
        if progress is not None:
            progress(members.size)

    had_slot = current_kind != 0
    moved = int((had_slot & (slots != current)).sum())
    return PlanResult(
        slot_s=slots,
        moved=moved,
        peak=float(load.max()) if load.size else 0.0,
        lower_bound=bound.value,
        lower_bound_explanation=bound.explanation,
        on_day_share=on_day_share(days, slots),
        max_on_day_share=limit.share,
        cap=float(cap),
        load=load,
        tenant_stacking=_tenant_stacking(days, slots, codes),
    )
