"""Water-filling: many identical runs into the load at once, a layer of non-overlapping runs at a
time on its lowest stretches; and the orders that keep one tenant's runs apart."""

from __future__ import annotations

import enum

import numpy as np

from scheduler.planning.week import (
    BIN_S,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    add_daily_spans,
    add_spans,
    cyclic_window_max,
    daily_fold,
    window_first_bin,
)

#: The seed of the random phases `fill` gives the stretches it spreads runs over: one generator
#: per rebalance, so that the same inputs give the same plan in any process.
PHASES_SEED = 20240604


class PlacementMode(enum.Enum):
    """Where `fill` may start runs."""

    ON_DAY = enum.auto()  # a weekly schedule's chosen day only
    DAILY = enum.auto()  # any time of day, the same every day: a daily schedule
    WINDOW = enum.auto()  # anywhere in a weekly schedule's window, nearest its day first
    LEVEL_ON_DAY = enum.auto()  # a weekly schedule's chosen day, always at its lowest load
    LEVEL_OFF_DAY = enum.auto()  # its window off its day, always at the lowest load


def spaced(
    candidates: np.ndarray, length: int, period: int | None, rng: np.random.Generator
) -> np.ndarray:
    """A subset of sorted start bins whose runs of `length` bins do not overlap."""
    if candidates.size <= 1:
        return candidates
    new_stretch = np.concatenate(([True], np.diff(candidates) > 1))
    stretch_of = np.cumsum(new_stretch) - 1
    firsts = candidates[new_stretch]
    stretch_length = np.diff(np.concatenate((np.flatnonzero(new_stretch), [candidates.size])))
    # A random phase per stretch, so that runs do not all start on the stretches' first
    # minutes: a crowd of starts on one minute would stack tenants there.
    phase = (rng.random(firsts.size) * np.minimum(stretch_length, length)).astype(np.int64)
    shifted = candidates - firsts[stretch_of] - phase[stretch_of]
    picks = candidates[(shifted >= 0) & (shifted % length == 0)]
    if picks.size > 1:
        picks = picks[np.concatenate(([True], np.diff(picks) >= length))]
    if period is not None and picks.size > 1 and picks[-1] + length > picks[0] + period:
        picks = picks[:-1]
    return picks


def fill(
    load: np.ndarray,
    day: int,
    length: int,
    count: int,
    mode: PlacementMode,
    target: float | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Water-fill up to `count` identical runs into the load; return their slots in seconds.

    Each round puts one run on every lowest stretch of the allowed starts, the runs not
    overlapping each other (so each raises the load there by one only). With a `target`, it
    stops before any run would take the load above it, and may place fewer than `count`.
    """
    if mode is PlacementMode.DAILY:
        placed = _fill_daily(load, length, count, target, rng)
    else:
        placed = _fill_window(load, day, length, count, mode, target, rng)
    if not placed:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(placed).astype(np.int64) * BIN_S


def _fill_daily(
    load: np.ndarray, length: int, count: int, target: float | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """The start bins (time of day) of daily runs filled in, a layer at a time."""
    placed: list[np.ndarray] = []
    remaining = count
    width = min(length, DAY_BINS)
    while remaining > 0:
        highest = cyclic_window_max(daily_fold(load), 0, DAY_BINS, width)
        level = highest.min()
        if target is not None and level + 1 > target + 1e-9:
            break
        lowest = spaced(np.flatnonzero(highest <= level), width, DAY_BINS, rng)
        picks = _thin(lowest, remaining)
        add_daily_spans(load, picks, length)
        placed.append(picks)
        remaining -= picks.size
    return placed


def _fill_window(
    load: np.ndarray,
    day: int,
    length: int,
    count: int,
    mode: PlacementMode,
    target: float | None,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The start bins (of the week) of weekly runs of `day` filled in, a layer at a time."""
    placed: list[np.ndarray] = []
    remaining = count
    first = window_first_bin(day)
    local = np.arange(WINDOW_BINS)
    on_day = (local >= SPILL_BINS) & (local < SPILL_BINS + DAY_BINS)
    # Off the day, a start nearer the day is closer to what its owner asked for.
    outside = np.maximum(SPILL_BINS - local, local - (SPILL_BINS + DAY_BINS - 1))
    while remaining > 0:
        highest = cyclic_window_max(load, first, WINDOW_BINS, length)
        if mode in (PlacementMode.LEVEL_ON_DAY, PlacementMode.LEVEL_OFF_DAY):
            allowed = on_day if mode is PlacementMode.LEVEL_ON_DAY else ~on_day
            level = highest[allowed].min()
            if target is not None and level + 1 > target + 1e-9:
                break
            picks = _thin(
                spaced(np.flatnonzero(allowed & (highest <= level)), length, None, rng), remaining
            )
        elif target is not None:
            # A run takes the latest start that fits: a long run then carries its load past the
            # day's end (or the window's), into quieter time, and leaves the room behind it to
            # the runs still to come. Days fill from their ends.
            allowed = on_day if mode is PlacementMode.ON_DAY else True
            fits = allowed & (highest + 1 <= target + 1e-9)
            picks = spaced(np.flatnonzero(fits), length, None, rng)
            if picks.size == 0:
                break
            picks = picks[-remaining:]
        else:
            level = highest.min()
            picks = spaced(np.flatnonzero(highest <= level), length, None, rng)
            if picks.size > remaining:
                nearest = np.argsort(outside[picks], kind="stable")[:remaining]
                picks = np.sort(picks[nearest])
        add_spans(load, first + picks, length)
        placed.append((first + picks) % WEEK_BINS)
        remaining -= picks.size
    return placed


def _thin(picks: np.ndarray, wanted: int) -> np.ndarray:
    """At most `wanted` of the picks, evenly spread."""
    if picks.size <= wanted:
        return picks
    return picks[np.linspace(0, picks.size - 1, wanted).round().astype(np.int64)]


def spread_order(tenant_codes: np.ndarray, seed: int) -> np.ndarray:
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


def spread_by_tenant(members: np.ndarray, tenants: np.ndarray) -> np.ndarray:
    """A group's members in the order that spreads each tenant's over the group; the seed comes
    from the group's first member, so the order depends on the inputs alone."""
    return members[spread_order(tenants[members], seed=int(members[0]) & 0xFFFF)]


def groups(members: np.ndarray, key: np.ndarray) -> list[np.ndarray]:
    """Members split by key, in ascending key order."""
    if members.size == 0:
        return []
    order = np.argsort(key, kind="stable")
    members, key = members[order], key[order]
    return np.split(members, np.flatnonzero(np.diff(key)) + 1)
