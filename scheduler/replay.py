"""Replaying a plan: how late images start when their durations are noisy and the cap holds.

Each schedule runs at its slot, every day or every week, for a few weeks. An image takes its
expected duration times a draw from a lognormal of mean one (log-sd `noise`), times a slowdown
common to all. A run starts when it is due if a place under the cap is free; otherwise it
waits, and each place that frees goes in admission's own order (`scheduler.admission.pick_runs`:
the waiting tenant holding the fewest places first, its oldest run first, one image per server),
kept here incrementally with heaps so that a replay of a million runs takes seconds. A day of
the week before is replayed first and left out of the figures, so that the first Monday meets
the runs Sunday carried over.

`headroom` bisects for the slowdown at which the 99th percentile delay passes an hour, on the
same draws, so that the figure moves with the slowdown alone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from common.slots import DAY_S, WEEK_S
from scheduler.planning import DAILY

#: Weeks replayed by default.
WEEKS = 3
#: The log-sd of the image durations' noise by default.
NOISE = 0.3
#: A run starting later than this is late; the headroom is the slowdown that makes the
#: 99th percentile run this late.
LATE_S = 3600.0
#: The slowdowns the headroom is searched between, and how many halvings of a doubling.
HEADROOM_RANGE = (0.5, 8.0)
HEADROOM_STEPS = 6
#: The seed of the noise draws: the same plan replays alike in any process.
NOISE_SEED = 20261203


@dataclass(frozen=True)
class Runs:
    """Every run of a replay, in the order they fall due (ties by schedule)."""

    due_s: np.ndarray  # float64, seconds from the first Monday 00:00 (warm-up ones negative)
    expected_s: np.ndarray  # float64
    noise: np.ndarray  # float64, mean one
    tenant: np.ndarray  # int64 codes
    server: np.ndarray  # int64: the schedule's index (one schedule per server)
    counted: np.ndarray  # bool: due in the weeks replayed, not in the warm-up


@dataclass(frozen=True)
class Delays:
    """How late the runs of a replay started (seconds)."""

    p50_s: float
    p99_s: float
    max_s: float
    late_share: float  # share of runs starting over LATE_S late
    runs: int

    def line(self) -> str:
        return (
            f"p50 {self.p50_s / 60:.1f} min, p99 {self.p99_s / 60:.1f} min, max "
            f"{self.max_s / 60:.1f} min, {self.late_share:.2%} over an hour late"
        )


def random_hour_slots(day_of_week: np.ndarray, seed: int = 0) -> np.ndarray:
    """The plan the public service's scheduler made: a random hour and minute per schedule,
    every day for a daily one, on its chosen day for a weekly one."""
    days = np.asarray(day_of_week, dtype=np.int64)
    minute = np.random.default_rng(seed).integers(0, DAY_S // 60, days.size) * 60
    return np.where(days == DAILY, minute, days * DAY_S + minute)


def runs_of(
    day_of_week: np.ndarray,
    expected_s: np.ndarray,
    tenant: np.ndarray,
    slot_s: np.ndarray,
    weeks: int = WEEKS,
    noise: float = NOISE,
    seed: int = NOISE_SEED,
) -> Runs:
    """The runs of `weeks` weeks and a day before them, their noise drawn from `seed`."""
    days = np.asarray(day_of_week, dtype=np.int64)
    slots = np.asarray(slot_s, dtype=np.float64)
    daily = np.flatnonzero(days == DAILY)
    weekly = np.flatnonzero(days != DAILY)
    periods = np.arange(-1, 7 * weeks)
    daily_due = (slots[daily][:, None] + DAY_S * periods[None, :]).ravel()
    daily_of = np.repeat(daily, periods.size)
    turns = np.arange(-1, weeks)
    weekly_due = (slots[weekly][:, None] + WEEK_S * turns[None, :]).ravel()
    weekly_of = np.repeat(weekly, turns.size)
    due = np.concatenate((daily_due, weekly_due))
    of = np.concatenate((daily_of, weekly_of))
    wanted = due >= -DAY_S
    due, of = due[wanted], of[wanted]
    order = np.lexsort((of, due))
    due, of = due[order], of[order]
    rng = np.random.default_rng(seed)
    draws = np.exp(rng.standard_normal(due.size) * noise - noise * noise / 2)
    codes = np.unique(np.asarray(tenant), return_inverse=True)[1].ravel().astype(np.int64)
    expected = np.asarray(expected_s, dtype=np.float64)
    return Runs(due, expected[of], draws, codes[of], of, due >= 0)


class TooLate(Exception):
    """More runs started over LATE_S late than the replay was asked to bear."""


def replay(
    runs: Runs, cap: int, slowdown: float = 1.0, late_limit: int | None = None
) -> np.ndarray:
    """Each run's start delay (seconds), the cap held and places given in admission's order.

    Where every run due could start at once, the runs start when due: that is found for all
    of them at once (`_crowded`), and the event loop replays only the stretches from a run that
    could not until the queue is empty and no late run is in flight. With a `late_limit`, it
    raises TooLate once more counted runs than that have started over LATE_S late."""
    duration = np.maximum(runs.expected_s * runs.noise * slowdown, 1e-3)
    crowded = _crowded(runs, duration, int(cap))
    start = runs.due_s.copy()
    if crowded.size == 0:
        return start - runs.due_s
    loop = _Admission(runs, duration, int(cap), start)
    loop.late_limit = late_limit
    longest = float(duration.max())
    at = 0
    while True:
        following = crowded[np.searchsorted(crowded, at) :]
        if following.size == 0:
            break
        due = runs.due_s[int(following[0])]
        # From the first run due at that moment: all of them wait together for the places.
        first = int(np.searchsorted(runs.due_s, due))
        since = int(np.searchsorted(runs.due_s, due - longest))
        flying = since + np.flatnonzero(start[since:first] + duration[since:first] > due)
        at = loop.until_calm(first, flying)
    return start - runs.due_s


def _crowded(runs: Runs, duration: np.ndarray, cap: int) -> np.ndarray:
    """The runs that could not start when due were every earlier one started when due: the
    cap full, or the server's previous run still in flight."""
    due = runs.due_s
    ends = np.sort(due + duration)
    in_flight = np.arange(1, due.size + 1) - np.searchsorted(ends, due, side="right")
    by_server = np.lexsort((due, runs.server))
    same = runs.server[by_server][1:] == runs.server[by_server][:-1]
    previous_end = (due + duration)[by_server][:-1]
    busy = np.zeros(due.size, dtype=bool)
    busy[by_server[1:]] = same & (previous_end > due[by_server][1:])
    return np.flatnonzero((in_flight > cap) | busy)


def delays(runs: Runs, cap: int, slowdown: float = 1.0) -> Delays:
    late = replay(runs, cap, slowdown)[runs.counted]
    if late.size == 0:
        return Delays(0.0, 0.0, 0.0, 0.0, 0)
    p50, p99 = np.percentile(late, [50, 99])
    return Delays(
        float(p50), float(p99), float(late.max()), float((late > LATE_S).mean()), int(late.size)
    )


def headroom(runs: Runs, cap: int) -> float:
    """The slowdown (a multiplier of every expected duration) at which the 99th percentile
    delay passes LATE_S, to within about 1%; the range's ends if outside it.

    A replay stops as soon as one run in a hundred has started that late: the slowdown is then
    too much, and the rest would only queue longer."""
    late_limit = int(runs.counted.sum()) // 100

    def too_slow(slowdown: float) -> bool:
        try:
            replay(runs, cap, slowdown, late_limit)
        except TooLate:
            return True
        return False

    low, high = HEADROOM_RANGE
    if too_slow(low):
        return low
    # Bracketed by doubling up from 1, or halving down: most plans fall within a factor of two.
    good, bad = 1.0, 2.0
    if too_slow(good):
        bad, good = good, good / 2
        while good > low and too_slow(good):
            bad, good = good, good / 2
    else:
        while bad < high and not too_slow(bad):
            good, bad = bad, bad * 2
        if bad >= high:
            return high
    for _ in range(HEADROOM_STEPS):
        middle = float(np.sqrt(good * bad))
        good, bad = (good, middle) if too_slow(middle) else (middle, bad)
    return good


class _Admission:
    """The event loop over a crowded stretch: places under the cap, and a heap of the waiting
    tenants keyed as `pick_runs` orders them: (places held, next run's due, its index). A
    tenant's key changes whenever its held places do; stale entries are skipped."""

    def __init__(self, runs: Runs, duration: np.ndarray, cap: int, start: np.ndarray) -> None:
        self.due = runs.due_s.tolist()
        self.duration = duration.tolist()
        self.tenant = runs.tenant.tolist()
        self.server = runs.server.tolist()
        self.codes, self.counted = runs.tenant, runs.counted.tolist()
        self.tenants = int(runs.tenant.max()) + 1 if runs.tenant.size else 0
        self.cap, self.start = cap, start
        #: Counted runs over LATE_S late before the replay gives up (None: never).
        self.late_limit: int | None = None
        self.too_late = 0

    def _count_late(self, run: int, delay: float) -> None:
        if delay > LATE_S and self.counted[run] and self.late_limit is not None:
            self.too_late += 1
            if self.too_late > self.late_limit:
                raise TooLate

    def until_calm(self, first: int, flying: np.ndarray) -> int:
        """Replay into `self.start` from run `first` (due now; `flying` in flight, started when
        due) until no run waits and none in flight started late; return the next run due."""
        due, duration, tenant, server = self.due, self.duration, self.tenant, self.server
        start, cap, count = self.start, self.cap, len(due)
        held = np.bincount(self.codes[flying], minlength=self.tenants).tolist()
        version = [0] * self.tenants
        ends = sorted((due[r] + duration[r], r) for r in flying.tolist())  # a heap
        busy = {server[r] for r in flying.tolist()}
        queues: dict[int, list[tuple[float, int]]] = {}  # tenant: heap of (due, run) waiting
        turns: list[tuple[int, float, int, int, int]] = []  # (held, due, run, tenant, version)
        parked: dict[int, list[tuple[float, int]]] = {}  # server: its runs waiting for it
        queued = late = 0  # runs in the queues (while any are, every place is taken); late ones
        after = first

        def queue_up(t: int) -> None:
            version[t] += 1
            queue = queues.get(t)
            if queue:
                heapq.heappush(turns, (held[t], queue[0][0], queue[0][1], t, version[t]))

        def begin(run: int, now: float) -> int:
            start[run] = now
            held[tenant[run]] += 1
            busy.add(server[run])
            heapq.heappush(ends, (now + duration[run], run))
            self._count_late(run, now - due[run])
            return int(now > due[run])

        def admit(now: float) -> None:
            nonlocal queued, late
            while queued and len(ends) < cap and turns:
                *_, u, seen = heapq.heappop(turns)
                if seen != version[u]:
                    continue
                _, head = heapq.heappop(queues[u])
                if not queues[u]:
                    del queues[u]
                queued -= 1
                if server[head] in busy:  # its server's earlier run went first
                    parked.setdefault(server[head], []).append((due[head], head))
                else:
                    late += begin(head, now)
                queue_up(u)

        def wait(run: int) -> None:
            nonlocal queued
            heapq.heappush(queues.setdefault(tenant[run], []), (due[run], run))
            queued += 1
            queue_up(tenant[run])

        while after < count or ends:
            if not queued and not parked and not late and after > first:
                return after
            next_due = due[after] if after < count else float("inf")
            if ends and ends[0][0] <= next_due:
                now, run = heapq.heappop(ends)
                late -= int(start[run] > due[run])
                t = tenant[run]
                held[t] -= 1
                busy.discard(server[run])
                for _, waiting in parked.pop(server[run], ()):
                    wait(waiting)
                if t in queues:
                    queue_up(t)
                admit(now)
                continue
            # Runs due at the same moment wait together: the places go in admission's order.
            alone = after + 1 == count or due[after + 1] > next_due
            while after < count and due[after] == next_due:
                run = after
                after += 1
                if server[run] in busy:
                    parked.setdefault(server[run], []).append((next_due, run))
                elif alone and not queued and len(ends) < cap:
                    begin(run, next_due)
                else:
                    wait(run)
            admit(next_due)
        return count
