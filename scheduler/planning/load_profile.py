"""Placing one schedule at once, between rebalances, from the planned load (`LoadProfile`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

from scheduler.planning.week import (
    BIN_S,
    DAILY,
    DAY_BINS,
    SPILL_BINS,
    WEEK_BINS,
    WINDOW_BINS,
    add_schedules,
    as_day_array,
    cyclic_window_max,
    daily_fold,
    duration_bins,
    span_bins,
    window_first_bin,
)


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
