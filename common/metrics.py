"""Metrics plumbing every process shares: the broker's queue lengths, and the exporters.

What is measured lives with what it measures: the planned peak in `scheduler.metrics`, the
tasks, runs and the gauges the API serves in `workers.metrics`. This module holds what they
need from below: a redis client for the broker URL, and the two ways a process exports.

A worker pool is a prefork parent and its children, and a scrape reaches one process, so the
pool runs in prometheus multiprocess mode: each child writes its samples to a file in a
directory of the pool's own, and the parent serves them all on METRICS_PORT. A per-process
exporter cannot work here, since every child would need a port of its own that Prometheus
cannot discover. Beat is one process and serves its own registry on the same setting.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from urllib.parse import urlsplit

from common.settings import Settings

log = logging.getLogger("scheduled_images.metrics")


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


def metrics_port() -> int:
    """The port a worker pool or beat serves its metrics on; 0 or less: none."""
    return Settings.from_env().metrics_port


def use_multiprocess_values() -> str:
    """Switch this process, and the children it forks after, to multiprocess values: each
    writes its samples to a file in PROMETHEUS_MULTIPROC_DIR (made afresh; a temporary one
    where unset), and any of them can serve the sum. Returns the directory."""
    from prometheus_client import values

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="si-prom-")
    # Files left by an earlier run of these processes would add its counts to ours.
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    return directory


def multiprocess_registry():  # type: ignore[no-untyped-def]
    """A registry of the samples every process in this multiprocess directory wrote."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    return registry


def serve_pool_metrics(port: int) -> None:
    """Switch this process pool to multiprocess values and serve them all from the parent."""
    use_multiprocess_values()
    start_exporter(port, multiprocess_registry())


def serve_process_metrics(port: int) -> None:
    """Serve this one process's default registry."""
    from prometheus_client import REGISTRY

    start_exporter(port, REGISTRY)


def start_exporter(port: int, registry) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import start_http_server

    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        # A second pool on one machine with the same port loses its metrics, not its work.
        log.warning("metrics exporter not started", extra={"port": port, "error": str(error)})
        return
    log.info("metrics exporter listening", extra={"port": port})


def mark_process_dead(pid: int) -> None:
    """A pool child exited: its live gauges stop counting (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
