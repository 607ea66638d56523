"""What the phases of one rebalance share: the fleet, its observer, its random phases and its
deadline; and how the searches share the time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.planning.fleet import Fleet
from scheduler.planning.observer import Observer

#: A full rebalance ends within this many seconds (a little past it at most: an LP or a plan
#: under way is finished): the searches take what the LPs and the first plan leave them, and
#: the finer LP is left out when it would leave them too little.
TIME_LIMIT_S = 45.0
#: What the quarter-hour LP needs: its own solve, realising its starts and some search.
FINE_LP_NEEDS_S = 25.0
#: Kept after the searches: runs back onto their day, the figures.
FINISHING_S = 3.0
#: The least time a search is given.
MIN_SEARCH_S = 2.0
#: Seconds all the searches of a plan over the target may take (half that above
#: LONGER_SEARCH_UP_TO, less below FULL_SEARCH_FROM).
REPLAN_BUDGET_S = 30.0
#: Above this many schedules the searches get half the time: whole runs round the LP's starts
#: finely and the searches gain less, and the LPs and the first plan take longer.
LONGER_SEARCH_UP_TO = 200_000
#: Below this many schedules, a plan aiming for the bound (the cap below it) gets search time in
#: proportion, at least a fifth: a small fleet's peak is a few runs, and reaching the bound is
#: not promised. One aiming for a cap that can be met gets the whole time.
FULL_SEARCH_FROM = 10_000


@dataclass(frozen=True)
class RebalanceRun:
    """One rebalance under way. `rng` gives `water_fill` its random phases, drawn in the order
    the phases run, so that the same inputs give the same plan; `deadline` is monotonic."""

    fleet: Fleet
    observer: Observer
    rng: np.random.Generator
    deadline: float


def search_budget(size: int, meetable: bool = False) -> float:
    """Seconds the searches of a re-plan may take for a fleet of `size` schedules, aiming for a
    cap that can be met (`meetable`) or below the bound for the bound itself."""
    if size > LONGER_SEARCH_UP_TO:
        return REPLAN_BUDGET_S * 0.5
    if meetable:
        return REPLAN_BUDGET_S
    return REPLAN_BUDGET_S * min(1.0, max(0.2, size / FULL_SEARCH_FROM))
