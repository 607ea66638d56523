"""What the phases of one rebalance share: the fleet, its observer, its random phases, the
strategies left out and the safety deadline; and how much work the searches may do.

The searches count their work (tries: one run's starts weighed for a move) instead of watching
the clock, so the same fleet, cap and current slots give the same plan on any machine. The
clock only guards against a machine so slow that the counted work would take far too long:
past `TIME_LIMIT_S` the searches and the LPs stop where they are.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from scheduler.planning.fleet import Fleet
from scheduler.planning.observer import Observer

#: Seconds after which a rebalance cuts its searches and LPs short: a safety limit only, well
#: above what the counted work takes on a million schedules, so that it decides nothing on a
#: machine of ordinary speed.
TIME_LIMIT_S = 300.0
#: What the quarter-hour LP needs before the safety limit: its solve and some search.
FINE_LP_NEEDS_S = 25.0
#: Tries all the searches of a plan over the target may make (a twentieth of that above
#: LONGER_SEARCH_UP_TO, less below FULL_SEARCH_FROM).
REPLAN_TRIES = 120_000
#: The fewest tries a search is given.
MIN_SEARCH_TRIES = 2_000
#: Runs levelling may take out and fill back in above LONGER_SEARCH_UP_TO schedules, the
#: longest groups first (below it, all): on a million schedules each group is large, and a
#: pass over them all would take longer than the plan.
LEVELLING_RUNS = 20_000
#: Runs the smoothing of the load may weigh for a move, the longest first, over its passes (a
#: twentieth of that above LONGER_SEARCH_UP_TO, where one run is a small part of the load).
SMOOTHING_TRIES = 20_000
#: Above this many schedules the searches get a twentieth of the tries: whole runs round the LP's
#: starts finely and the searches gain less, each try looks through more runs, and the LPs and
#: the first plan take longer.
LONGER_SEARCH_UP_TO = 200_000
#: Below this many schedules, a plan aiming for the bound (the cap below it) gets tries in
#: proportion, at least a fifth: a small fleet's peak is a few runs, and reaching the bound is
#: not promised. One aiming for a cap that can be met gets them all.
FULL_SEARCH_FROM = 10_000

#: The strategies a rebalance can be told to leave out (`rebalance(disabled=...)`), to measure
#: what each one gains; see README.md for what each is for.
STRATEGIES = frozenset(
    {
        "day_by_day",
        "at_cap",
        "asked_caps",
        "lowest_cap",
        "quarter_hour",
        "back_on_day",
        "make_room",
        "breakout",
        "room_on_busy_days",
        "levelling",
        "smoothing",
    }
)


@dataclass
class Work:
    """Tries a search may still make, and the safety deadline (monotonic) that stops it
    sooner on a machine far too slow."""

    allowed: int
    deadline: float = math.inf
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.allowed - self.used)

    @property
    def done(self) -> bool:
        return self.used >= self.allowed or time.monotonic() >= self.deadline

    def spend(self, tries: int = 1) -> None:
        self.used += tries

    def share(self, tries: int) -> Work:
        """A part of what is left, at most `tries`, for one search; `spend` its `used` after."""
        return Work(max(0, min(tries, self.left)), self.deadline)


@dataclass(frozen=True)
class RebalanceRun:
    """One rebalance under way. `rng` gives `water_fill` its random phases, drawn in the order
    the phases run, so that the same inputs give the same plan; `deadline` is monotonic, the
    safety limit; `disabled`, the strategies left out."""

    fleet: Fleet
    observer: Observer
    rng: np.random.Generator
    deadline: float
    disabled: frozenset[str] = field(default_factory=frozenset)
    #: The strategies the rebalance came to, used or left out: one it never came to cannot
    #: have changed its plan.
    reached: set[str] = field(default_factory=set)

    def uses(self, strategy: str) -> bool:
        self.reached.add(strategy)
        return strategy not in self.disabled

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline


def search_tries(size: int, meetable: bool = False) -> int:
    """Tries the searches of a re-plan may make for a fleet of `size` schedules, aiming for a
    cap that can be met (`meetable`) or below the bound for the bound itself."""
    if size > LONGER_SEARCH_UP_TO:
        return REPLAN_TRIES // 20
    if meetable:
        return REPLAN_TRIES
    return int(REPLAN_TRIES * min(1.0, max(0.2, size / FULL_SEARCH_FROM)))


def levelling_runs(size: int) -> int:
    """Runs levelling may take out and fill back in for a fleet of `size` schedules."""
    return size if size <= LONGER_SEARCH_UP_TO else LEVELLING_RUNS


def smoothing_tries(size: int) -> int:
    """Runs the smoothing of the load may weigh for a fleet of `size` schedules."""
    return SMOOTHING_TRIES if size <= LONGER_SEARCH_UP_TO else SMOOTHING_TRIES // 20
