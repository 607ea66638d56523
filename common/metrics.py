"""The service's Prometheus metrics: every definition, the database-derived collector the API
serves, and the exporter that workers and beat run.

Two kinds of metric, two ways out:

- What the database and the broker know (runs by state, in flight against the cap, queue
  lengths, the oldest wait, the planned peak, runs failed by reason) is read on scrape by
  `ServiceCollector`, served by the API's `/metrics`. It is the same in every API process, so
  it needs no aggregation; a short cache keeps a burst of scrapes from becoming queries.
- What only a worker sees (task durations, image durations observed when a run ends, the
  tick's counts) is recorded where it happens. A worker pool is a prefork parent and its
  children, and a scrape reaches one process, so the pool runs in prometheus multiprocess
  mode: each child writes its samples to a file in a directory of the pool's own, and the
  parent serves them all on METRICS_PORT. A per-process exporter cannot work here, since
  every child would need a port of its own that Prometheus cannot discover. Beat is one
  process and serves its own registry on the same setting.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlsplit

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import orm

from common.models import (
    CANCELLED,
    DONE,
    FAILED,
    IN_FLIGHT,
    PENDING,
    REBALANCE_STATES,
    RUN_STATES,
    SKIPPED,
    TIMED_OUT,
    Rebalance,
    Run,
    Schedule,
)

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

# The planned peak is a pass over every schedule; the plan changes slowly, so once a minute.
PLANNED_PEAK_REFRESH_S = 60.0
FAILED_STATES = (FAILED, TIMED_OUT, CANCELLED, SKIPPED)


def failure_reason(state: str, error: str | None) -> str:
    """A short, bounded label for why a run ended without an image (its error is free text)."""
    text = (error or "").lower()
    if state == TIMED_OUT or "timed out" in text:
        return "timeout"
    if state == CANCELLED:
        return "server_gone" if "no longer exists" in text else "cancelled"
    if state == SKIPPED:
        return "busy" if "busy" in text else "missed_window"
    if "create failed" in text:
        return "create_error"
    if "error" in text:
        return "image_error"
    if "disappeared" in text:
        return "image_missing"
    return "other"


def redis_client(broker_url: str):  # type: ignore[no-untyped-def]
    """A redis-py client for the broker URL, which may be kombu's `redis+socket://` form."""
    import redis

    parts = urlsplit(broker_url)
    if parts.scheme == "redis+socket":
        return redis.Redis(unix_socket_path=parts.path, socket_timeout=2)
    return redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)


def queue_lengths(broker_url: str, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue: kombu's Redis transport keeps a queue as a list."""
    client = redis_client(broker_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            return dict(zip(queues, pipe.execute(), strict=True))
    finally:
        client.close()


def planned_peak(session: orm.Session) -> float:
    """The highest number of images the plan puts in flight at any minute of the week."""
    from scheduler.planning.load_profile import LoadProfile

    rows = session.execute(
        sa.select(Schedule.day_of_week, Schedule.slot_s, Schedule.expected_duration_s).where(
            Schedule.server_gone_at.is_(None)
        )
    ).all()
    if not rows:
        return 0.0
    days, slots, durations = zip(*rows, strict=True)
    return LoadProfile.from_schedules(days, slots, durations).peak()


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
        self._peak: tuple[float, float] | None = None

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
        from common.runtime_settings import inflight_cap

        up = GaugeMetricFamily("si_metrics_database_up", "1 when the gauges below could be read")
        try:
            with self._sessions() as session:
                families = self._database_families(
                    session, inflight_cap(session, self._default_cap)
                )
            up.add_metric([], 1)
        except sa.exc.SQLAlchemyError:
            log.warning("metrics: database unreachable", exc_info=True)
            families = []
            up.add_metric([], 0)
        families.append(up)
        families.extend(self._broker_families())
        return families

    def _database_families(self, session: orm.Session, cap: int) -> list[Metric]:
        now = self._clock()
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
                Run.state == PENDING, Run.not_before <= now
            )
        )
        waiting = GaugeMetricFamily(
            "si_oldest_waiting_run_age_seconds",
            "How long the oldest run that may start has waited for a place (0: none waits)",
        )
        waiting.add_metric([], 0.0 if oldest is None else max((now - oldest).total_seconds(), 0))

        failed = GaugeMetricFamily(
            "si_runs_failed",
            "Runs kept in the database that ended without an image, by state and reason",
            labels=["state", "reason"],
        )
        counts: dict[tuple[str, str], int] = {}
        rows = session.execute(
            sa.select(Run.state, Run.error, sa.func.count())
            .where(Run.state.in_(FAILED_STATES))
            .group_by(Run.state, Run.error)
        )
        for state, error, count in rows:
            key = (state, failure_reason(state, error))
            counts[key] = counts.get(key, 0) + count
        for (state, reason), count in sorted(counts.items()):
            failed.add_metric([state, reason], count)

        schedules = GaugeMetricFamily("si_schedules", "Schedules enabled")
        schedules.add_metric([], session.scalar(sa.select(sa.func.count()).select_from(Schedule)))

        peak = GaugeMetricFamily(
            "si_planned_peak_in_flight",
            "Most images the plan puts in flight at any minute of the week (compare to the cap)",
        )
        peak.add_metric([], self._planned_peak(session))

        # The plan pool's work: a job queued for long, or failed, needs an operator.
        jobs = dict(
            session.execute(
                sa.select(Rebalance.state, sa.func.count()).group_by(Rebalance.state)
            ).all()
        )
        rebalances = GaugeMetricFamily(
            "si_rebalances", "Rebalance jobs kept in the database, by state", labels=["state"]
        )
        for state in REBALANCE_STATES:
            rebalances.add_metric([state], jobs.get(state, 0))
        return [runs, in_flight, cap_family, waiting, failed, schedules, peak, rebalances]

    def _planned_peak(self, session: orm.Session) -> float:
        now = time.monotonic()
        if self._peak is None or now - self._peak[0] >= PLANNED_PEAK_REFRESH_S:
            self._peak = (now, planned_peak(session))
        return self._peak[1]

    def _broker_families(self) -> list[Metric]:
        if not self._broker_url:
            return []
        from workers.celery_app import QUEUES

        lengths = GaugeMetricFamily(
            "si_queue_length", "Messages waiting in each broker queue", labels=["queue"]
        )
        try:
            for queue, length in queue_lengths(self._broker_url, QUEUES).items():
                lengths.add_metric([queue], length)
        except Exception:
            log.warning("metrics: broker unreachable", exc_info=True)
            return []
        return [lengths]


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


def _serve_pool_metrics(port: int) -> None:
    """Switch this worker pool to multiprocess values and serve them all from the parent."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server, values

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="si-prom-")
    # Files left by an earlier run of this pool would add its counts to ours.
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    _start_exporter(port, registry, start_http_server)


def _start_exporter(port: int, registry, start_http_server) -> None:  # type: ignore[no-untyped-def]
    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        # A second pool on one machine with the same port loses its metrics, not its work.
        log.warning("metrics exporter not started", extra={"port": port, "error": str(error)})
        return
    log.info("metrics exporter listening", extra={"port": port})


def _child_exited(pid: int | None = None, **_: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def _metrics_port() -> int:
    from common.settings import Settings

    return Settings.from_env().metrics_port


def _on_worker_init(**_: object) -> None:
    port = _metrics_port()
    if port > 0:
        _serve_pool_metrics(port)


def _on_beat_init(**_: object) -> None:
    from prometheus_client import REGISTRY, start_http_server

    port = _metrics_port()
    if port > 0:
        _start_exporter(port, REGISTRY, start_http_server)


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
    if run.state == DONE and run.attempt_stamp is not None:
        IMAGE_SECONDS.labels(run.trigger).observe(max(now.timestamp() - run.attempt_stamp, 0.0))


def count_runs_ended(counts: dict[str, int]) -> None:
    """Count runs the tick ended in bulk (skipped, cancelled, timed out), by final state."""
    for state, count in counts.items():
        if count:
            RUNS_ENDED.labels(state).inc(count)
