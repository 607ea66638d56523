"""Drill of the rate limits: one tenant's writes and a client's failed logins, sent as fast as
they go through two API processes that share one Redis, as gunicorn workers or API replicas do.

Run from the project folder: `python -m tests.bench.bench_limits`. It prints how many requests
each limit let through against the limit (they must be equal: the count is shared, not per
process), what the refused ones answered, and the time a write takes with the Redis-backed
count beside a read measured in the same run.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests
from werkzeug.serving import make_server

from api import create_app
from api.auth import add_token
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.settings import Settings
from tests.support.databases import LOCAL_ADMIN_URL, answers, create_migrated, drop
from tests.support.processes import RedisServer

WRITES_PER_MINUTE = 100
FAILURES_PER_MINUTE = 30
SENT = 400
THREADS = 8


@contextmanager
def served(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def fire(bases: list[str], method: str, path: str, token: str, body: dict | None) -> Counter:
    """SENT requests over THREADS connections, alternating between the processes."""

    def one(number: int) -> int:
        url = bases[number % len(bases)] + path
        return requests.request(
            method, url, json=body, headers={"X-Auth-Token": token}, timeout=10
        ).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        return Counter(pool.map(one, range(SENT)))


def latency_ms(base: str, method: str, path: str, token: str, body: dict | None) -> float:
    """Median of 50 requests, after 10 that warm the connection and the caches up."""
    session = requests.Session()
    for _ in range(10):
        session.request(method, base + path, json=body, headers={"X-Auth-Token": token})
    times = []
    for _ in range(50):
        started = time.perf_counter()
        session.request(method, base + path, json=body, headers={"X-Auth-Token": token})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if not answers(LOCAL_ADMIN_URL):
        raise SystemExit("bench_limits needs the PostgreSQL at 127.0.0.1:5432")
    url = create_migrated(LOCAL_ADMIN_URL, "si_bench_limits")
    workdir = Path(tempfile.mkdtemp(prefix="si-bench-limits-"))
    redis = RedisServer(workdir / "redis")
    redis.start()
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        tokens = workdir / "tokens.json"
        add_token(tokens, "writer", "tenant-w", ["creator"])
        add_token(tokens, "timer", "tenant-t", ["creator"])
        cloud = SimulatedDriver(sessions, seconds_per_gb=1)
        [server] = cloud.add_servers("tenant-w", 1)
        [timed] = cloud.add_servers("tenant-t", 1)
        settings = Settings.from_env(
            {
                "DATABASE_URL": url,
                "BROKER_URL": redis.url,
                "AUTH_TOKENS_FILE": str(tokens),
                "STATE_DIR": str(workdir / "state"),
                "LOG_LEVEL": "WARNING",
                "TENANT_WRITE_LIMIT": f"{WRITES_PER_MINUTE} per minute",
                "AUTH_FAILURE_LIMIT": f"{FAILURES_PER_MINUTE} per minute",
            }
        )
        apps = [create_app(settings, sessions=sessions, compute=cloud) for _ in range(2)]
        # The timing's 120 writes fit under the default limit, counted either way.
        default = settings.replace(tenant_write_limit=Settings.from_env({}).tenant_write_limit)
        redis_counted = create_app(default, sessions=sessions, compute=cloud)
        memory_counted = create_app(
            default.replace(broker_url=""), sessions=sessions, compute=cloud
        )
        with served(redis_counted) as shared, served(memory_counted) as alone:
            timing(shared, alone, timed)
        with served(apps[0]) as first, served(apps[1]) as second:
            report(first, second, server)
    finally:
        engine.dispose()
        redis.stop()
        drop(LOCAL_ADMIN_URL, url)


def timing(shared: str, in_memory: str, server: str) -> None:
    """A write counted in Redis against the same write counted in the process, same run."""
    path = f"/v2/tenant-t/servers/{server}/rax-si-image-schedule"
    body = {"image_schedule": {"retention": 3}}
    local = min(latency_ms(in_memory, "POST", path, "timer", body) for _ in range(2))
    redis = min(latency_ms(shared, "POST", path, "timer", body) for _ in range(2))
    print("== rate limits, two API processes sharing one Redis ==")
    print(
        f"median write: {redis:.2f} ms with the counts in Redis, {local:.2f} ms with them in "
        f"the process's memory: ratio {redis / local:.2f}"
    )


def report(first: str, second: str, server: str) -> None:
    path = f"/v2/tenant-w/servers/{server}/rax-si-image-schedule"
    body = {"image_schedule": {"retention": 3}}
    writes = fire([first, second], "POST", path, "writer", body)
    print(
        f"tenant writes: {SENT} sent, {writes[200]} answered 200 against a limit of "
        f"{WRITES_PER_MINUTE}/min, {writes[429]} answered 429; others: "
        f"{dict((k, v) for k, v in writes.items() if k not in (200, 429)) or 'none'}"
    )
    refused = requests.post(first + path, json=body, headers={"X-Auth-Token": "writer"})
    wait = refused.headers.get("Retry-After")
    print(f"  a refused write: Retry-After {wait} s, body {refused.json()}")
    guesses = fire([first, second], "GET", path, "made-up-token", None)
    print(
        f"failed logins: {SENT} sent with a made-up token, {guesses[401]} answered 401 against "
        f"a limit of {FAILURES_PER_MINUTE}/min, {guesses[429]} answered 429"
    )
    print(
        "  (a failure is counted once answered, so requests in flight together may pass the "
        f"limit by up to their number: {THREADS} here)"
    )


if __name__ == "__main__":
    main()
