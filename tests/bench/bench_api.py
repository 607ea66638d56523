"""Benchmark of the API under gunicorn: GET and POST of a schedule beside a trivial endpoint.

Run from the project folder: `python -m tests.bench.bench_api`. It makes its own database
(on the local PostgreSQL if one answers, else an embedded one) and its own Redis as the broker,
where the API keeps its rate limits as it does in service; seeds a tenant, a token and
simulated servers with schedules, serves the real API with `scheduled-images api`, and drives
it from load generator processes on loopback:

- closed loop, fixed concurrency: throughput and p50/p99 latency of `GET /healthz` (the
  trivial endpoint of the same server), GET of a schedule and POST of a schedule (daily or
  weekly on a day drawn at random, so that most POSTs move the schedule and place it anew);
- open loop at a fixed 500 requests/s of GET: p99 measured from each request's planned send
  time, so a stalled server cannot hide its queue (no coordinated omission).

The closed loops use wrk when it is installed (`apt-get install wrk`): a generator in C
leaves the shared cores to the server, so the trivial endpoint is measured at the server's
pace, not the generator's. Without wrk they fall back to a plain Python generator
(http.client, keep-alive; nothing to install), which costs about as much CPU per request as
the trivial endpoint itself and so flatters the ratio: the report says which one ran. The
open loop is always the Python generator, since wrk cannot send at a fixed rate; at 500/s it
takes a small share of a core.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from api.auth import add_token
from common import migrate
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.embedded import embedded_postgres_url
from tests.support.databases import LOCAL_ADMIN_URL, answers, create_migrated, drop
from tests.support.processes import RedisServer, free_port

# The same local server through its unix socket, as an API on the database's host would reach
# it: no TCP stack on either side of each round trip. Used when it answers.
LOCAL_SOCKET_DIR = "/var/run/postgresql"
TENANT = "bench"
TOKEN = "bench-token"
SERVERS = 200
# Two generator processes of four connections each: enough to keep both gunicorn workers
# (8 threads each) busy without the generator taking the cores away from the server.
PROCESSES = 2
CONNECTIONS = 4
OPEN_LOOP_RATE = 500
# Closed-loop rounds that the trivial endpoint and GET alternate in.
ROUNDS = 4
TARGET_P99_MS = 20.0
#: GET of a schedule against the trivial endpoint's throughput, in the same run.
TARGET_RATIO = 0.50
#: POST of a schedule, closed loop: its p99.
TARGET_POST_P99_MS = 50.0


# -- the load generator (runs in child processes) --------------------------------------------


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> int:
    headers = {"X-Auth-Token": TOKEN}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def _make_request(kind: str, servers: list[str], rng: random.Random) -> tuple[str, str, bytes]:
    if kind == "healthz":
        return "GET", "/healthz", None  # type: ignore[return-value]
    server = rng.choice(servers)
    path = f"/v2/{TENANT}/servers/{server}/rax-si-image-schedule"
    if kind == "get":
        return "GET", path, None  # type: ignore[return-value]
    schedule: dict = {"retention": rng.randint(1, 30)}
    if rng.random() < 0.5:
        schedule["day_of_week"] = rng.choice(["MONDAY", "FRIDAY", "sunday"])
    return "POST", path, json.dumps({"image_schedule": schedule}).encode()


def _closed_loop_connection(
    port: int, kind: str, servers: list[str], until: float, seed: int, out: list
) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, errors = [], 0
    while time.perf_counter() < until:
        method, path, body = _make_request(kind, servers, rng)
        started = time.perf_counter()
        try:
            status = _request(conn, method, path, body)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        latencies.append(time.perf_counter() - started)
        errors += status != 200
    conn.close()
    out.append((latencies, errors))


def _closed_loop_process(args: tuple) -> tuple[list[float], int]:
    port, kind, servers, duration, seed = args
    until = time.perf_counter() + duration
    out: list = []
    threads = [
        threading.Thread(
            target=_closed_loop_connection,
            args=(port, kind, servers, until, seed * 100 + i, out),
        )
        for i in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for lat, _ in out for x in lat], sum(e for _, e in out)


def _open_loop_process(args: tuple) -> tuple[list[float], int, float]:
    """Send at a fixed rate; a request's latency counts from when it was due, not sent."""
    port, servers, rate, duration, seed = args
    total = int(rate * duration)
    start = time.perf_counter() + 0.1
    next_index = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def worker(worker_seed: int) -> None:
        rng = random.Random(worker_seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method, path, body = _make_request("get", servers, rng)
            try:
                status = _request(conn, method, path, body)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                status = 0
            done = time.perf_counter()
            with lock:
                latencies.append(done - due)
                errors[0] += status != 200
        conn.close()

    # Enough connections that 500/s at a few ms each never waits for a free one.
    threads = [threading.Thread(target=worker, args=(seed * 100 + i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return latencies, errors[0], elapsed


# -- the wrk generator (closed loop only) -----------------------------------------------------

# wrk runs this in each of its threads; done() prints the figures as one JSON line.
WRK_SCRIPT = string.Template("""
local kind, token, paths = $kind, $token, {$paths}
local days = {"MONDAY", "FRIDAY", "sunday"}
math.randomseed($seed)
request = function()
  if kind == "healthz" then
    return wrk.format("GET", "/healthz", {["X-Auth-Token"] = token})
  end
  local path = paths[math.random(#paths)]
  if kind == "get" then
    return wrk.format("GET", path, {["X-Auth-Token"] = token})
  end
  local day = ""
  if math.random() < 0.5 then day = ', "day_of_week": "' .. days[math.random(#days)] .. '"' end
  local body = '{"image_schedule": {"retention": ' .. math.random(30) .. day .. '}}'
  local headers = {["X-Auth-Token"] = token, ["Content-Type"] = "application/json"}
  return wrk.format("POST", path, headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
""")


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_closed_loop(
    wrk: str, workdir: Path, port: int, kind: str, servers: list[str], duration: float
) -> dict:
    paths = [f"/v2/{TENANT}/servers/{server}/rax-si-image-schedule" for server in servers]
    script = workdir / f"wrk-{kind}.lua"
    script.write_text(
        WRK_SCRIPT.substitute(
            kind=_lua_string(kind),
            token=_lua_string(TOKEN),
            paths=", ".join(_lua_string(p) for p in paths),
            seed=random.randrange(1 << 30),
        )
    )
    command = [
        wrk,
        "-t1",
        f"-c{PROCESSES * CONNECTIONS}",
        f"-d{max(1, round(duration))}s",
        "-s",
        str(script),
    ]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"^WRK (\{.*\})$", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    figures = json.loads(found.group(1))
    return {
        "requests": figures["requests"],
        "errors": figures["errors"],
        "rps": figures["requests"] / (figures["duration_us"] / 1e6),
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
    }


# -- measurement ------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def closed_loop(pool, port: int, kind: str, servers: list[str], duration: float) -> dict:  # type: ignore[no-untyped-def]
    jobs = [(port, kind, servers, duration, seed) for seed in range(PROCESSES)]
    started = time.perf_counter()
    results = pool.map(_closed_loop_process, jobs)
    elapsed = time.perf_counter() - started
    latencies = [x for lat, _ in results for x in lat]
    return {
        "requests": len(latencies),
        "errors": sum(e for _, e in results),
        "rps": len(latencies) / min(elapsed, duration + 0.5),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
    }


def _combine(rounds: list[dict]) -> dict:
    """One endpoint's rounds as one figure: the worst round's p99, not an average of them."""
    requests = sum(r["requests"] for r in rounds)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
        "rps": requests / sum(r["requests"] / r["rps"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
    }


def open_loop(pool, port: int, servers: list[str], rate: int, duration: float) -> dict:  # type: ignore[no-untyped-def]
    # Two processes at half the rate each, so the generator itself is not the bottleneck.
    jobs = [(port, servers, rate / 2, duration, seed) for seed in range(2)]
    results = pool.map(_open_loop_process, jobs)
    latencies = [x for lat, _, _ in results for x in lat]
    elapsed = max(e for _, _, e in results)
    return {
        "requests": len(latencies),
        "errors": sum(e for _, e, _ in results),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
    }


# -- the system under test --------------------------------------------------------------------


def _socket_url(url: str) -> str:
    name = sa.make_url(url).database
    return f"postgresql+psycopg2://postgres@/{name}?host={LOCAL_SOCKET_DIR}"


@contextlib.contextmanager
def bench_database(workdir: Path) -> Iterator[tuple[str, str]]:
    """A fresh database, migrated; dropped (or its embedded server stopped) at the end."""
    if answers(LOCAL_ADMIN_URL):
        url = create_migrated(LOCAL_ADMIN_URL, "si_bench")
        created, where = url, "PostgreSQL at 127.0.0.1:5432"
        try:
            if answers(_socket_url(url)):
                url, where = (
                    _socket_url(url),
                    f"local PostgreSQL, unix socket in {LOCAL_SOCKET_DIR}",
                )
            yield url, where
        finally:
            drop(LOCAL_ADMIN_URL, created)
    else:
        import embedded_postgres

        url = embedded_postgres_url(workdir / "state", database="si_bench")
        try:
            migrate.upgrade(url)
            yield url, "embedded PostgreSQL"
        finally:
            embedded_postgres.get_server(workdir / "state" / "pg").cleanup()


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[str]:
    """A Redis of the bench's own, stopped at the end: the URL."""
    server = RedisServer(workdir / "redis")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def api_process(url: str, broker_url: str, tokens: Path, workdir: Path) -> Iterator[int]:
    port = free_port()
    command = Path(sys.executable).parent / "scheduled-images"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "AUTH_TOKENS_FILE": str(tokens),
        "STATE_DIR": str(workdir / "state"),
        "LOG_LEVEL": "WARNING",
        "BROKER_URL": broker_url,
        # The API's own cost is measured here; the limits' figures are bench_limits's.
        "TENANT_WRITE_LIMIT": "1000000000 per minute",
    }
    log = workdir / "api.log"
    # gunicorn's own lines would break up the figures: they go to a file, shown on failure.
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(command), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            _wait_until_up(port, process)
        except RuntimeError:
            sys.stderr.write(log.read_text(errors="replace"))
            raise
        yield port
    finally:
        # The whole session: the gunicorn arbiter and its workers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with status {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the API did not answer /healthz within 30 s")


def seed(url: str, port: int) -> list[str]:
    """Simulated servers of the bench tenant, each with a schedule stored through the API."""
    engine = make_engine(url)
    try:
        servers = SimulatedDriver(make_session_factory(engine)).add_servers(TENANT, SERVERS)
    finally:
        engine.dispose()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for server in servers:
        body = json.dumps({"image_schedule": {"retention": 7}}).encode()
        path = f"/v2/{TENANT}/servers/{server}/rax-si-image-schedule"
        status = _request(conn, "POST", path, body)
        if status != 200:
            raise RuntimeError(f"seeding a schedule answered {status}")
    conn.close()
    return servers


def _line(name: str, figures: dict) -> str:
    return (
        f"  {name:<24} {figures['rps']:>8.0f} req/s   p50 {figures['p50_ms']:>6.1f} ms"
        f"   p99 {figures['p99_ms']:>6.1f} ms   ({figures['requests']} requests,"
        f" {figures['errors']} not 200)"
    )


def report(figures: dict, rounds: list[dict], steady: dict) -> None:
    """Each endpoint's figures, then each target: GET and POST against the trivial endpoint
    measured in the same run, and the open loop's p99."""
    ratio = figures["get"]["rps"] / figures["healthz"]["rps"]
    by_round = ", ".join(f"{r['get']['rps'] / r['healthz']['rps']:.0%}" for r in rounds)
    print(_line("GET /healthz (trivial)", figures["healthz"]))
    print(_line("GET schedule", figures["get"]))
    print(_line("POST schedule", figures["post"]))
    print(
        f"  GET/trivial throughput ratio: {ratio:.0%} (rounds: {by_round})"
        f"   (target >= {TARGET_RATIO:.0%}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    )
    post, trivial = figures["post"], figures["healthz"]
    met = post["p99_ms"] < TARGET_POST_P99_MS and post["errors"] == 0
    print(
        f"  POST p50 {post['p50_ms']:.1f} ms, p99 {post['p99_ms']:.1f} ms"
        f" (trivial endpoint in this run: p50 {trivial['p50_ms']:.1f} ms,"
        f" p99 {trivial['p99_ms']:.1f} ms)"
        f"   (target p99 < {TARGET_POST_P99_MS:.0f} ms: {'met' if met else 'MISSED'})"
    )
    print(_line(f"GET open loop {OPEN_LOOP_RATE}/s", steady))
    met = steady["p99_ms"] < TARGET_P99_MS and steady["errors"] == 0
    print(
        f"  GET p99 at {OPEN_LOOP_RATE} req/s: {steady['p99_ms']:.1f} ms"
        f"   (target < {TARGET_P99_MS:.0f} ms: {'met' if met else 'MISSED'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per closed loop")
    parser.add_argument("--open-duration", type=float, default=10.0, help="seconds of open loop")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="closed-loop generator; auto: wrk if installed, else Python",
    )
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    generator = (
        "wrk, 1 thread"
        if wrk
        else f"Python, {PROCESSES} processes"
        + ("" if args.generator == "python" else " (no wrk here: apt-get install wrk)")
    )

    workdir = Path(tempfile.mkdtemp(prefix="si-bench-api-"))
    try:
        tokens = workdir / "tokens.json"
        add_token(tokens, TOKEN, TENANT, ["creator"])
        with (
            bench_database(workdir) as (url, where),
            broker(workdir) as broker_url,
            api_process(url, broker_url, tokens, workdir) as port,
        ):
            servers = seed(url, port)
            print(
                f"API bench: gunicorn on 127.0.0.1:{port}, database: {where},"
                f" limits in Redis at {broker_url}"
            )
            print(
                f"  {os.cpu_count()} cores shared by server and generator; closed loop with "
                f"{PROCESSES * CONNECTIONS} keep-alive connections, {args.duration:.0f} s each"
                f" ({ROUNDS} alternating rounds for the trivial endpoint and GET),"
                f" generator: {generator}"
            )
            with mp.get_context("fork").Pool(PROCESSES) as pool:

                def measure(kind: str, duration: float) -> dict:
                    if wrk:
                        return wrk_closed_loop(wrk, workdir, port, kind, servers, duration)
                    return closed_loop(pool, port, kind, servers, duration)

                measure("get", 2.0)  # warm-up: pools, caches
                # The trivial endpoint and GET take turns in short rounds, so that a burst of
                # other work on the machine weighs on both sides of the ratio, not on one.
                rounds = [
                    {kind: measure(kind, args.duration / ROUNDS) for kind in ("healthz", "get")}
                    for _ in range(ROUNDS)
                ]
                figures = {kind: _combine([r[kind] for r in rounds]) for kind in ("healthz", "get")}
                figures["post"] = measure("post", args.duration)
                steady = open_loop(pool, port, servers, OPEN_LOOP_RATE, args.open_duration)
        report(figures, rounds, steady)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
