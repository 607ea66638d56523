"""The planned in-flight load over the UTC week at minute resolution, and placing one schedule.

A schedule with slot s and expected duration d is in flight over [s, s + d): on each of the seven
days for a daily schedule, once for a weekly one, wrapping round the end of the week. Slots the
planner gives are whole minutes, so counting a schedule in every minute its run touches gives
the exact instantaneous number in flight at each minute's start, which is where it peaks.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

from common.slots import DAY_S, SPILL_S, WEEK_S

BIN_S = 60
WEEK_BINS = WEEK_S // BIN_S
DAY_BINS = DAY_S // BIN_S
SPILL_BINS = SPILL_S // BIN_S
WINDOW_BINS = DAY_BINS + 2 * SPILL_BINS
DAILY = -1  # day_of_week of a daily schedule in integer arrays


def as_day_array(day_of_week: Iterable[int | None] | np.ndarray) -> np.ndarray:
    """Days as an int8 array, a daily schedule (None) as DAILY (-1)."""
    if isinstance(day_of_week, np.ndarray) and day_of_week.dtype.kind in "iu":
        return day_of_week.astype(np.int8, copy=False)
    return np.array([DAILY if d is None else int(d) for d in day_of_week], dtype=np.int8)


def window_first_bin(day_of_week: np.ndarray | int) -> np.ndarray | int:
    """The first minute of the week a weekly schedule's window allows: 12:00 the day before
    its day (Monday's: Sunday 12:00)."""
    return (day_of_week * DAY_BINS - SPILL_BINS) % WEEK_BINS


def on_their_day(days: np.ndarray, slot_s: np.ndarray) -> np.ndarray:
    """For weekly schedules' days and slots (seconds after Monday 00:00 UTC): whether each
    slot lies on its chosen day, not in the window's spill into the days around it."""
    return slot_s // DAY_S == days


def duration_bins(duration_s: np.ndarray | float) -> np.ndarray:
    """Whole minutes a run of that length touches when it starts on a minute (at least one)."""
    bins = np.ceil(np.asarray(duration_s, dtype=np.float64) / BIN_S)
    return np.clip(bins, 1, WEEK_BINS).astype(np.int64)


def span_bins(slot_s: np.ndarray, duration_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first bin, bins touched) of runs starting at arbitrary seconds; exact for whole minutes."""
    slot_s = np.asarray(slot_s, dtype=np.int64)
    start = slot_s // BIN_S
    end = np.ceil((slot_s + np.asarray(duration_s, dtype=np.float64)) / BIN_S).astype(np.int64)
    return start, np.clip(end - start, 1, WEEK_BINS)


def add_spans(
    load: np.ndarray, start: np.ndarray, length: np.ndarray | int, weight: float = 1.0
) -> None:
    """Add `weight` over [start, start + length) bins of the weekly load, wrapping the week."""
    start = np.asarray(start, dtype=np.int64) % WEEK_BINS
    if start.size == 0:
        return
    end = start + np.broadcast_to(np.asarray(length, dtype=np.int64), start.shape)
    wraps = end > WEEK_BINS
    diff = np.bincount(start, minlength=WEEK_BINS + 1).astype(np.float64)
    diff -= np.bincount(np.minimum(end, WEEK_BINS), minlength=WEEK_BINS + 1)
    if wraps.any():
        diff[0] += np.count_nonzero(wraps)
        diff -= np.bincount(end[wraps] - WEEK_BINS, minlength=WEEK_BINS + 1)
    load += weight * np.cumsum(diff[:WEEK_BINS])


def daily_starts(time_of_day_bin: np.ndarray) -> np.ndarray:
    """The seven weekly start bins of daily runs (flattened, day-major per run)."""
    t = np.asarray(time_of_day_bin, dtype=np.int64)
    return (t[:, None] + DAY_BINS * np.arange(7, dtype=np.int64)[None, :]).ravel()


def add_schedules(
    load: np.ndarray,
    day_of_week: np.ndarray,
    slot_s: np.ndarray,
    duration_s: np.ndarray,
    weight: float = 1.0,
) -> None:
    """Add schedules (day DAILY for daily) at their slots to the weekly load."""
    start, length = span_bins(slot_s, duration_s)
    daily = day_of_week == DAILY
    add_spans(load, start[~daily], length[~daily], weight)
    if daily.any():
        add_spans(load, daily_starts(start[daily]), np.repeat(length[daily], 7), weight)


def sliding_max(values: np.ndarray, width: int) -> np.ndarray:
    """max(values[i:i + width]) for every i in [0, len - width], in O(len) (van Herk/Gil-Werman)."""
    n = values.size
    if width <= 1:
        return values.copy()
    blocks = -(-n // width)
    padded = np.full(blocks * width, -np.inf)
    padded[:n] = values
    grid = padded.reshape(blocks, width)
    prefix = np.maximum.accumulate(grid, axis=1).ravel()
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    count = n - width + 1
    return np.maximum(suffix[:count], prefix[width - 1 : width - 1 + count])


def cyclic_window_max(profile: np.ndarray, first: int, count: int, width: int) -> np.ndarray:
    """Max of the cyclic profile over [s, s + width) for s = first … first + count - 1."""
    width = min(width, profile.size)
    idx = np.arange(first, first + count + width - 1) % profile.size
    return sliding_max(profile[idx], width)


def daily_fold(load: np.ndarray) -> np.ndarray:
    """Per minute of the day, the highest load over the seven days: what a daily run meets."""
    return load.reshape(7, DAY_BINS).max(axis=0)


class _TenantStarts:
    """Which minutes each tenant's runs start on, to avoid stacking one tenant on a minute.

    Keys are kept as sorted arrays (cheap for a million schedules) plus a small per-tenant
    overlay for incremental changes.
    """

    def __init__(self) -> None:
        self.codes: dict[Hashable, int] = {}
        self.week_keys = np.zeros(0, dtype=np.int64)  # code * WEEK_BINS + weekly start bin
        self.day_keys = np.zeros(0, dtype=np.int64)  # code * DAY_BINS + daily start bin
        self.overlay: dict[tuple[int, bool], dict[int, int]] = {}

    def code(self, tenant_id: Hashable) -> int:
        return self.codes.setdefault(tenant_id, len(self.codes))

    def load_bulk(self, codes: np.ndarray, day_of_week: np.ndarray, start_bin: np.ndarray) -> None:
        daily = day_of_week == DAILY
        weekly_keys = codes[~daily] * WEEK_BINS + start_bin[~daily]
        self.week_keys = np.sort(weekly_keys)
        self.day_keys = np.sort(codes[daily] * DAY_BINS + start_bin[daily] % DAY_BINS)

    def change(self, code: int, daily: bool, start_bin: int, delta: int) -> None:
        overlay = self.overlay.setdefault((code, daily), {})
        overlay[start_bin] = overlay.get(start_bin, 0) + delta

    def _starts(self, code: int, daily: bool) -> np.ndarray:
        """How many of the tenant's runs start at each minute of the day (daily runs) or of the
        week (weekly ones). Its keys are one stretch of the sorted array: two searches, not two
        per minute asked about."""
        period = DAY_BINS if daily else WEEK_BINS
        base = self.day_keys if daily else self.week_keys
        low, high = np.searchsorted(base, [code * period, (code + 1) * period])
        counts = np.bincount(base[low:high] - code * period, minlength=period)
        for start_bin, delta in self.overlay.get((code, daily), {}).items():
            counts[start_bin] += delta
        return counts

    def clashes(self, code: int, daily: bool, bins: np.ndarray) -> np.ndarray:
        """How many of the tenant's runs start on the same minute as a run at each bin."""
        daily_starts = self._starts(code, True)
        weekly_starts = self._starts(code, False)
        if daily:
            # A daily run at t meets daily runs at t and weekly runs at t on any day.
            return daily_starts[bins] + weekly_starts.reshape(7, DAY_BINS).sum(axis=0)[bins]
        return weekly_starts[bins] + daily_starts[bins % DAY_BINS]


class LoadProfile:
    """The planned number of images in flight at each minute of the UTC week.

    Build it from all schedules with `from_schedules`, then `place` new or changed ones one at
    a time: a placement reads and updates only this profile, never the fleet.
    """

    def __init__(self) -> None:
        self.load = np.zeros(WEEK_BINS, dtype=np.float64)
        self._tenants = _TenantStarts()

    @classmethod
    def from_schedules(
        cls,
        day_of_week: Iterable[int | None] | np.ndarray,
        slot_s: Iterable[int] | np.ndarray,
        duration_s: Iterable[float] | np.ndarray,
        tenant_id: Iterable[Hashable] | np.ndarray | None = None,
    ) -> LoadProfile:
        """The profile of a fleet; schedules whose slot is negative (none yet) are skipped."""
        days = as_day_array(day_of_week)
        slots = np.asarray(slot_s, dtype=np.int64)
        durations = np.asarray(duration_s, dtype=np.float64)
        planned = slots >= 0
        profile = cls()
        add_schedules(profile.load, days[planned], slots[planned], durations[planned])
        if tenant_id is not None:
            tenants = np.asarray(tenant_id)[planned]
            uniques, codes = np.unique(tenants, return_inverse=True)
            profile._tenants.codes = {
                t.item() if hasattr(t, "item") else t: i for i, t in enumerate(uniques)
            }
            profile._tenants.load_bulk(
                codes.astype(np.int64), days[planned], slots[planned] // BIN_S
            )
        return profile

    def add(
        self,
        day_of_week: int | None,
        slot_s: int,
        duration_s: float,
        tenant_id: Hashable | None = None,
    ) -> None:
        """Count one schedule at its slot."""
        self._change(day_of_week, slot_s, duration_s, tenant_id, 1)

    def remove(
        self,
        day_of_week: int | None,
        slot_s: int,
        duration_s: float,
        tenant_id: Hashable | None = None,
    ) -> None:
        """Stop counting one schedule at its slot (as it was added)."""
        self._change(day_of_week, slot_s, duration_s, tenant_id, -1)

    def _change(
        self,
        day_of_week: int | None,
        slot_s: int,
        duration_s: float,
        tenant_id: Hashable | None,
        delta: int,
    ) -> None:
        day = DAILY if day_of_week is None else int(day_of_week)
        first = int(slot_s) // BIN_S
        length = int(span_bins(np.array([slot_s]), np.array([duration_s]))[1][0])
        if day == DAILY:
            for d in range(7):
                self._add_one(first + d * DAY_BINS, length, delta)
        else:
            self._add_one(first, length, delta)
        if tenant_id is not None:
            code = self._tenants.code(tenant_id)
            self._tenants.change(
                code, day == DAILY, first % DAY_BINS if day == DAILY else first, delta
            )

    def _add_one(self, first: int, length: int, delta: int) -> None:
        first %= WEEK_BINS
        end = first + length
        if end <= WEEK_BINS:
            self.load[first:end] += delta
        else:
            self.load[first:] += delta
            self.load[: end - WEEK_BINS] += delta

    def peak(self) -> float:
        """The highest planned number in flight at any minute of the week."""
        return float(self.load.max())

    def hourly_load(self) -> list[float]:
        """Mean planned number in flight in each hour of the week, Monday 00:00 UTC first."""
        return self.load.reshape(168, -1).mean(axis=1).tolist()

    def hourly_peak(self) -> list[float]:
        """Highest planned number in flight in each hour of the week, Monday 00:00 UTC first."""
        return self.load.reshape(168, -1).max(axis=1).tolist()

    def place(
        self,
        day_of_week: int | None,
        duration_s: float,
        tenant_id: Hashable | None,
        cap: float,
    ) -> int:
        """Choose the best slot for one schedule given the current load, count it there, and
        return it (seconds; a whole minute).

        The best slot keeps the peak lowest: under the cap on the chosen day if possible, else
        under the cap elsewhere in the window, else wherever the peak grows least (the chosen
        day winning ties). Among equal choices it avoids minutes where the tenant already
        starts a run, then prefers the emptiest stretch.
        """
        length = int(duration_bins(duration_s))
        code = None if tenant_id is None else self._tenants.code(tenant_id)
        if day_of_week is None:
            best = self._choose(
                cyclic_window_max(daily_fold(self.load), 0, DAY_BINS, min(length, DAY_BINS)),
                self._fold_mean(length),
                np.arange(DAY_BINS),
                np.ones(DAY_BINS, dtype=bool),
                code,
                True,
                cap,
            )
            slot_s = best * BIN_S
        else:
            first = window_first_bin(int(day_of_week))
            highest = cyclic_window_max(self.load, first, WINDOW_BINS, length)
            bins = (first + np.arange(WINDOW_BINS)) % WEEK_BINS
            on_day = (np.arange(WINDOW_BINS) >= SPILL_BINS) & (
                np.arange(WINDOW_BINS) < SPILL_BINS + DAY_BINS
            )
            best = self._choose(
                highest, self._window_mean(first, length), bins, on_day, code, False, cap
            )
            slot_s = best * BIN_S
        self.add(day_of_week, slot_s, length * BIN_S, tenant_id)
        return int(slot_s)

    def _window_mean(self, first: int, length: int) -> np.ndarray:
        idx = np.arange(first, first + WINDOW_BINS + length) % WEEK_BINS
        sums = np.concatenate(([0.0], np.cumsum(self.load[idx])))
        return (sums[length : length + WINDOW_BINS] - sums[:WINDOW_BINS]) / length

    def _fold_mean(self, length: int) -> np.ndarray:
        length = min(length, DAY_BINS)
        daily = self.load.reshape(7, DAY_BINS).mean(axis=0)
        sums = np.concatenate(([0.0], np.cumsum(np.concatenate((daily, daily[:length])))))
        return (sums[length : length + DAY_BINS] - sums[:DAY_BINS]) / length

    def _choose(
        self,
        highest: np.ndarray,
        mean: np.ndarray,
        bins: np.ndarray,
        on_day: np.ndarray,
        code: int | None,
        daily: bool,
        cap: float,
    ) -> int:
        fits = highest + 1 <= cap + 1e-9
        if (fits & on_day).any():
            allowed = fits & on_day
        elif fits.any():
            allowed = fits
        else:
            lowest = highest.min()
            allowed = highest == lowest
            if (allowed & on_day).any():
                allowed &= on_day
        candidates = np.flatnonzero(allowed)
        score = highest[candidates]
        tied = candidates[score == score.min()]
        if code is not None:
            clashes = self._tenants.clashes(code, daily, bins[tied])
            tied = tied[clashes == clashes.min()]
        return int(bins[tied[np.argmin(mean[tied])]])
