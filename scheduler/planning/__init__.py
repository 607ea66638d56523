"""The planner's mathematics: a slot for every schedule, the in-flight load under the cap.

Pure: the standard library, numpy, scipy and `common.slots`/`common.days` only, no database,
Celery, Flask, click or settings (README.md here states the rule, the aims and the modules).
"""

from scheduler.planning.load_profile import LoadProfile
from scheduler.planning.lower_bound import LowerBound, lower_bound
from scheduler.planning.observer import QUIET, Observer, QuietObserver
from scheduler.planning.on_day_limit import max_on_day_share
from scheduler.planning.rebalancing import PlanResult, rebalance
from scheduler.planning.week import DAILY, on_day_share, planned_load

__all__ = [
    "DAILY",
    "QUIET",
    "LoadProfile",
    "LowerBound",
    "Observer",
    "PlanResult",
    "QuietObserver",
    "lower_bound",
    "max_on_day_share",
    "on_day_share",
    "planned_load",
    "rebalance",
]
