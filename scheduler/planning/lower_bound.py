"""The lowest peak in flight any plan could have for a fleet, with its reason in words."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.days import DAY_NAMES
from common.slots import DAY_S, SPILL_S, WEEK_S
from scheduler.planning.hourly_relaxation import relaxed_bound
from scheduler.planning.week import (
    BIN_S,
    DAILY,
    DAY_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    add_schedules,
    as_day_array,
    duration_bins,
    window_first_bin,
)


@dataclass(frozen=True)
class LowerBound:
    """The bound, the average load (one of its reasons) and an explanation for operators."""

    value: float  # a whole number: the count in flight at any minute is one
    average: float
    explanation: str
    relaxed: float  # the bound before it is rounded up
    # From the hourly LP, when asked for: its own bound, and how low a plan laying daily runs
    # flat could go at best.
    hourly: float | None = None
    daily_flat: float | None = None


def _run_bound(work_s: float, durations: np.ndarray, span_s: float) -> float:
    """Lowest P with P * span + (the P longest durations) >= work.

    Work that must start inside a stretch of `span_s` seconds either runs inside it, under a
    peak of P, or runs past its end; only runs in flight at the end can, at most P of them,
    and each carries at most its own duration past it.
    """
    longest = np.concatenate(([0.0], np.cumsum(np.sort(durations)[::-1])))

    def shortfall(peak: float) -> float:
        full_runs = min(int(peak), durations.size)
        beyond = longest[full_runs]
        if full_runs < durations.size:
            beyond += (peak - full_runs) * (longest[full_runs + 1] - longest[full_runs])
        return work_s - peak * span_s - beyond

    low, high = 0.0, work_s / span_s
    if shortfall(low) <= 0:
        return 0.0
    for _ in range(60):
        mid = (low + high) / 2
        if shortfall(mid) > 0:
            low = mid
        else:
            high = mid
    return high


def _in_flight_whatever_the_start(days: np.ndarray, lengths: np.ndarray) -> tuple[int, int]:
    """(most runs in flight at one minute whatever their starts, that minute of the week).

    A run that may start from minute a to minute b and lasts L minutes covers [b, a + L) from
    any of those starts; runs longer than the spread of their starts (a weekly run over two
    days, a daily one over a day) all cover some minutes.
    """
    daily = days == DAILY
    spread = np.where(daily, DAY_BINS - 1, WINDOW_BINS - 1)
    first = np.where(daily, 0, window_first_bin(days.astype(np.int64)))
    covered = lengths - spread
    some = covered > 0
    if not some.any():
        return 0, 0
    # The covered minutes are a run of their own from the latest start, daily ones every day.
    load = np.zeros(WEEK_BINS)
    latest = (first[some] + spread[some]) % WEEK_BINS
    add_schedules(load, days[some], latest * BIN_S, covered[some] * BIN_S)
    minute = int(np.argmax(load))
    return int(round(load[minute])), minute


def lower_bound(
    day_of_week: np.ndarray | list[int | None],
    duration_s: np.ndarray | list[float],
    hourly: bool = False,
) -> LowerBound:
    """The lowest peak any plan could have: the count in flight at a minute is a whole number,
    so the reasons' real-valued bound rounded up.

    Three reasons bound it: the average load over the week (every daily run seven times, every
    weekly run once); for each run of consecutive days, the weekly work that must start inside
    their joint window (from 12:00 the day before the first to 12:00 the day after the last)
    together with the daily work that falls inside it, over the time the window lasts; and the
    runs in flight at some minute whatever their starts. With `hourly`, a fourth: the hourly LP.
    """
    days = as_day_array(day_of_week)
    # As the load counts them: a run longer than the week is in flight all week, once.
    durations = np.minimum(np.asarray(duration_s, dtype=np.float64), WEEK_S)
    daily = days == DAILY
    daily_work_per_day = float(durations[daily].sum())
    average = (7 * daily_work_per_day + float(durations[~daily].sum())) / WEEK_S
    best, reason = average, None
    by_day = [durations[days == day] for day in range(7)]
    for first in range(7):
        for count in range(1, 7):
            members = [by_day[(first + i) % 7] for i in range(count)]
            weekly = np.concatenate(members)
            if weekly.size == 0:
                continue
            span_s = count * DAY_S + 2 * SPILL_S
            work = float(weekly.sum()) + daily_work_per_day * span_s / DAY_S
            bound = _run_bound(work, weekly, span_s)
            if bound > best:
                best, reason = bound, (first, count, weekly.size, float(weekly.sum()), span_s)
    lines = [
        f"average load: {average:.1f} in flight "
        f"({(7 * daily_work_per_day + durations[~daily].sum()) / 3600:.0f} image-hours "
        f"over the 168 hours of the week)"
    ]
    if reason is None:
        lines.append("no run of popular days asks for more than the average")
    else:
        first, count, n, work, span_s = reason
        last = (first + count - 1) % 7
        days_text = DAY_NAMES[first].title() + ("" if count == 1 else f"–{DAY_NAMES[last].title()}")
        before = DAY_NAMES[(first - 1) % 7].title()
        after = DAY_NAMES[(last + 1) % 7].title()
        lines.append(
            f"{days_text}: {n} weekly images ({work / 3600:.0f} image-hours) must start "
            f"between {before} 12:00 and {after} 12:00 UTC, a window of {span_s / 3600:.0f} h "
            f"that also holds {daily_work_per_day * span_s / DAY_S / 3600:.0f} image-hours of "
            f"daily images; at most one run per place in flight at its end can carry work past "
            f"it, so the peak is at least {best:.1f}"
        )
    lengths = duration_bins(durations)
    always, minute = _in_flight_whatever_the_start(days, lengths)
    if always > best:
        best = float(always)
        lines.append(
            f"{always} images are in flight at {DAY_NAMES[minute // DAY_BINS].title()} "
            f"{minute % DAY_BINS // 60:02d}:{minute % 60:02d} UTC whatever their starts: each "
            f"runs longer than the time its start may move"
        )
    if not hourly:
        return _rounded_up(best, average, lines)
    relaxed = relaxed_bound(days, lengths)
    lines.append(
        f"hour by hour, with every run's time in flight counted in the hours it touches and "
        f"each run starting anywhere its window allows, the busiest hour's mean is at least "
        f"{relaxed.value:.1f}"
    )
    return _rounded_up(max(best, relaxed.value), average, lines, relaxed.value, relaxed.daily_flat)


def _rounded_up(
    value: float,
    average: float,
    lines: list[str],
    hourly: float | None = None,
    daily_flat: float | None = None,
) -> LowerBound:
    # A hair below a whole number is that number, not the next one up.
    rounded = float(math.ceil(value - 1e-9)) if value > 0 else 0.0
    if rounded != value:
        lines.append(f"images in flight are whole: at least {rounded:.0f}")
    return LowerBound(
        value=rounded,
        average=average,
        explanation="; ".join(lines),
        relaxed=value,
        hourly=hourly,
        daily_flat=daily_flat,
    )
