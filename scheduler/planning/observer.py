"""Who hears what a rebalance does: one observer, passed explicitly from `rebalance` down.

A command shows the stages and a bar, a rebalance job stores the stage for the operator API,
a test records the searches and the LPs. The planner never reaches for one any other way.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """What a rebalance tells as it goes. Called from the planner's own thread, except
    `solving_lowest_lp`, which the LP solved in a second thread calls from there."""

    def stage(self, what: str) -> None:
        """A stage starts: a line saying what the planner does next."""

    def progress(self, done: int, total: int) -> None:
        """`done` of the `total` schedules to place day by day are placed."""

    def searching(self, tries: int, goal: float) -> None:
        """A plan following the on-day LP's starts searches for a lower peak, for at most
        `tries` tries, until its peak is at most `goal`."""

    def solving_lowest_lp(self, start_min: int) -> None:
        """The on-day LP is solved at its lowest cap, starts every `start_min` minutes."""


class QuietObserver:
    """Hears everything and says nothing: the default, and a base that observers override
    only where they listen."""

    def stage(self, what: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass

    def searching(self, tries: int, goal: float) -> None:
        pass

    def solving_lowest_lp(self, start_min: int) -> None:
        pass


QUIET = QuietObserver()
