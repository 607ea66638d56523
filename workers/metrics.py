"""The metrics of the pipeline: tasks and runs where they happen, and the gauges the API serves.

Two kinds of metric, two ways out:

- What the database and the broker know (runs by state, in flight against the cap, queue
  lengths, the oldest wait, the planned peak, runs failed by reason, stale schedules) is read
  on scrape by `ServiceCollector`, served by the API's `/metrics`. It is the same in every API
  process, so it needs no aggregation; a short cache keeps a burst of scrapes from becoming
  queries.
- What only a worker sees (task durations, image durations observed when a run ends, the
  tick's counts) is recorded where it happens, and exported by the pool (`common.metrics`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import orm

from common import metrics
from common.models import REBALANCE_STATES, Rebalance, Run, Schedule
from common.runs import FINAL, IN_FLIGHT, RUN_STATES, RunState, in_states
from common.runtime_settings import inflight_cap
from common.schedules import count_stale
from scheduler.metrics import PlannedPeakGauge
from workers.celery_app import QUEUES

log = logging.getLogger("scheduled_images.metrics")

# Worker-side metrics all carry a label: in multiprocess mode a labelled metric makes its
# value object when a label set is first used, which is after the pool has switched to
# multiprocess values, so a definition made at import time still lands in the shared files.
TASK_SECONDS = Histogram(
    "si_task_seconds",
    "Time a Celery task ran, by task",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TASKS = Counter("si_tasks_total", "Celery tasks finished, by task and outcome", ["task", "outcome"])
IMAGE_SECONDS = Histogram(
    "si_image_duration_seconds",
    "Time from asking for an image to seeing it ACTIVE, by trigger",
    ["trigger"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600),
)
RUNS_ENDED = Counter(
    "si_runs_ended_total", "Runs a worker step or the tick brought to a final state", ["state"]
)
TICKS_PUBLISHED = Counter(
    "si_beat_ticks_published_total", "Ticks beat has sent to the broker", ["task"]
)

#: Final states without an image: what `si_runs_failed` counts, by state and reason code.
FAILED_STATES = FINAL - {RunState.DONE}
#: The label of a failed run without a reason code.
NO_REASON = "other"


class ServiceCollector(Collector):
    """Gauges read from PostgreSQL and the broker on scrape, cached for `cache_s` seconds."""

    def __init__(
        self,
        sessions: orm.sessionmaker[orm.Session],
        default_cap: int,
        broker_url: str = "",
        cache_s: float = 5.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._sessions = sessions
        self._default_cap = default_cap
        self._broker_url = broker_url
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self._peak = PlannedPeakGauge()

    def describe(self) -> list[Metric]:
        # Describing would run the queries at registration; nothing is checked by name here.
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_s:
                self._cached = (now, self._read())
            families = self._cached[1]
        yield from families

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("si_metrics_database_up", "1 when the gauges below could be read")
        try:
            with self._sessions() as session:
                families = self._database_families(session)
            up.add_metric([], 1)
        except sa.exc.SQLAlchemyError:
            log.warning("metrics: database unreachable", exc_info=True)
            families = []
            up.add_metric([], 0)
        families.append(up)
        families.extend(self._broker_families())
        return families

    def _database_families(self, session: orm.Session) -> list[Metric]:
        cap = inflight_cap(session, self._default_cap)
        now = self._clock()
        families = _run_families(session, cap, now)
        schedules = GaugeMetricFamily("si_schedules", "Schedules enabled")
        schedules.add_metric([], session.scalar(sa.select(sa.func.count()).select_from(Schedule)))
        stale = GaugeMetricFamily(
            "si_schedules_stale",
            "Schedules with no image ACTIVE within their last period plus 12 hours (API.md)",
        )
        stale.add_metric([], count_stale(session, now))
        families += [schedules, stale, self._peak.family(session), _rebalance_family(session)]
        return families

    def _broker_families(self) -> list[Metric]:
        if not self._broker_url:
            return []
        lengths = GaugeMetricFamily(
            "si_queue_length", "Messages waiting in each broker queue", labels=["queue"]
        )
        try:
            for queue, length in metrics.queue_lengths(self._broker_url, QUEUES).items():
                lengths.add_metric([queue], length)
        except Exception:
            log.warning("metrics: broker unreachable", exc_info=True)
            return []
        return [lengths]


def _run_families(session: orm.Session, cap: int, now: dt.datetime) -> list[Metric]:
    by_state = dict(
        session.execute(sa.select(Run.state, sa.func.count()).group_by(Run.state)).all()
    )
    runs = GaugeMetricFamily("si_runs", "Runs kept in the database, by state", labels=["state"])
    for state in RUN_STATES:
        runs.add_metric([state], by_state.get(state, 0))

    in_flight = GaugeMetricFamily("si_in_flight", "Image creations in flight now")
    in_flight.add_metric([], sum(by_state.get(s, 0) for s in IN_FLIGHT))
    cap_family = GaugeMetricFamily("si_inflight_cap", "The cap on image creations in flight")
    cap_family.add_metric([], cap)

    oldest = session.scalar(
        sa.select(sa.func.min(Run.not_before)).where(
            Run.state == RunState.PENDING, Run.not_before <= now
        )
    )
    waiting = GaugeMetricFamily(
        "si_oldest_waiting_run_age_seconds",
        "How long the oldest run that may start has waited for a place (0: none waits)",
    )
    waiting.add_metric([], 0.0 if oldest is None else max((now - oldest).total_seconds(), 0))
    return [runs, in_flight, cap_family, waiting, _failed_family(session)]


def _failed_family(session: orm.Session) -> Metric:
    failed = GaugeMetricFamily(
        "si_runs_failed",
        "Runs kept in the database that ended without an image, by state and reason",
        labels=["state", "reason"],
    )
    rows = session.execute(
        sa.select(Run.state, Run.reason, sa.func.count())
        .where(in_states(FAILED_STATES))
        .group_by(Run.state, Run.reason)
    )
    counts: dict[tuple[str, str], int] = {}
    for state, reason, count in rows:
        key = (state, reason or NO_REASON)
        counts[key] = counts.get(key, 0) + count
    for (state, reason), count in sorted(counts.items()):
        failed.add_metric([state, reason], count)
    return failed


def _rebalance_family(session: orm.Session) -> Metric:
    # The plan pool's work: a job queued for long, or failed, needs an operator.
    jobs = dict(
        session.execute(sa.select(Rebalance.state, sa.func.count()).group_by(Rebalance.state)).all()
    )
    rebalances = GaugeMetricFamily(
        "si_rebalances", "Rebalance jobs kept in the database, by state", labels=["state"]
    )
    for state in REBALANCE_STATES:
        rebalances.add_metric([state], jobs.get(state, 0))
    return rebalances


# -- worker and beat side ------------------------------------------------------------------

_started: dict[str, float] = {}


def _task_started(task_id: str | None = None, **_: object) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


def _task_finished(task_id: str | None = None, task=None, state: str | None = None, **_: object):  # type: ignore[no-untyped-def]
    began = _started.pop(task_id or "", None)
    name = getattr(task, "name", "unknown")
    if began is not None:
        TASK_SECONDS.labels(name).observe(time.monotonic() - began)
    TASKS.labels(name, (state or "unknown").lower()).inc()


def _child_exited(pid: int | None = None, **_: object) -> None:
    metrics.mark_process_dead(pid or os.getpid())


def _on_worker_init(**_: object) -> None:
    port = metrics.metrics_port()
    if port > 0:
        metrics.serve_pool_metrics(port)


def _on_beat_init(**_: object) -> None:
    port = metrics.metrics_port()
    if port > 0:
        metrics.serve_process_metrics(port)


def _count_tick(sender: str | None = None, **_: object) -> None:
    if sender == "si.tick":
        TICKS_PUBLISHED.labels(sender).inc()


def install_celery_metrics() -> None:
    """Connect the Celery signals that record worker and beat metrics and start exporters.

    Called where the tasks are defined, which worker and beat both import before they start.
    """
    from celery import signals

    signals.task_prerun.connect(_task_started, weak=False)
    signals.task_postrun.connect(_task_finished, weak=False)
    signals.worker_process_shutdown.connect(_child_exited, weak=False)
    signals.after_task_publish.connect(_count_tick, weak=False)
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.beat_init.connect(_on_beat_init, weak=False)


def observe_run_end(run: Run, now: dt.datetime) -> None:
    """Count a run that just ended; a finished image also gives its duration."""
    RUNS_ENDED.labels(run.state).inc()
    if run.state == RunState.DONE and run.attempt_stamp is not None:
        IMAGE_SECONDS.labels(run.trigger).observe(max(now.timestamp() - run.attempt_stamp, 0.0))


def count_runs_ended(counts: dict[str, int]) -> None:
    """Count runs the tick ended in bulk (skipped, cancelled, timed out), by final state."""
    for state, count in counts.items():
        if count:
            RUNS_ENDED.labels(state).inc(count)
