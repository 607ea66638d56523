"""The plan's own gauge: the most images it puts in flight at any minute of the week."""

from __future__ import annotations

import time

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import orm

from common.models import Schedule
from scheduler.planning.load_profile import LoadProfile

#: Seconds a planned peak is reused: it is a pass over every schedule, and the plan changes
#: slowly.
PLANNED_PEAK_REFRESH_S = 60.0


def planned_peak(session: orm.Session) -> float:
    """The highest number of images the plan puts in flight at any minute of the week."""
    rows = session.execute(
        sa.select(Schedule.day_of_week, Schedule.slot_s, Schedule.expected_duration_s).where(
            Schedule.server_gone_at.is_(None)
        )
    ).all()
    if not rows:
        return 0.0
    days, slots, durations = zip(*rows, strict=True)
    return LoadProfile.from_schedules(days, slots, durations).peak()


class PlannedPeakGauge:
    """`si_planned_peak_in_flight`, read again at most once every PLANNED_PEAK_REFRESH_S."""

    def __init__(self) -> None:
        self._peak: tuple[float, float] | None = None

    def family(self, session: orm.Session) -> GaugeMetricFamily:
        now = time.monotonic()
        if self._peak is None or now - self._peak[0] >= PLANNED_PEAK_REFRESH_S:
            self._peak = (now, planned_peak(session))
        peak = GaugeMetricFamily(
            "si_planned_peak_in_flight",
            "Most images the plan puts in flight at any minute of the week (compare to the cap)",
        )
        peak.add_metric([], self._peak[1])
        return peak
