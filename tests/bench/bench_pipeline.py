"""Benchmark of the image pipeline: the tick turning due schedules into runs and published
messages, beside Celery's raw publish rate to the same Redis in the same run; then the
end-to-end rate of runs finished on the simulated cloud with real worker and beat processes,
beside the rate of no-op tasks through the same workers, and what each run cost them:
database statements and transactions, pool checkouts, messages published, tasks by name.

    python -m tests.bench.bench_pipeline [--sizes 10000,100000] [--images 300] [--workers 2]
        [--concurrency 2] [--pool prefork] [--cap 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa

from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory, transaction
from common.embedded import embedded_postgres_url
from common.models import Run, Schedule
from common.runtime_settings import set_inflight_cap
from common.settings import Settings
from tests.bench import counted
from tests.support.databases import LOCAL_ADMIN_URL, answers, create_migrated, drop
from tests.support.processes import RedisServer, ServiceProcess, wait_for

#: Tenants the end-to-end fleet is spread over: polls and prunes are per tenant.
TENANTS = 20


def fresh_database(workdir: Path) -> tuple[str, str]:
    """A new database on the local PostgreSQL, else on an embedded one."""
    admin = (
        LOCAL_ADMIN_URL
        if answers(LOCAL_ADMIN_URL)
        else embedded_postgres_url(workdir, database="postgres")
    )
    return admin, create_migrated(admin, "si_bench")


def raw_publish_rate(app, count: int, broker: redis.Redis, batch: int = 0) -> float:  # type: ignore[no-untyped-def]
    """No-op tasks published as fast as Celery goes: one round trip each, or pipelined."""
    noop = app.tasks["si.bench.noop"]
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        if batch:
            with producer.batch(max_size=batch):
                for index in range(count):
                    noop.apply_async((index,), producer=producer)
        else:
            for index in range(count):
                noop.apply_async((index,), producer=producer)
    elapsed = time.perf_counter() - started
    broker.delete("bench", "create")
    return count / elapsed


def seed_due_schedules(engine: sa.Engine, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "tenant_id": f"t{i % 500}",
            "server_id": f"bench-{uuid.uuid4()}",
            "server_name": "b",
            "retention": 3,
            "day_of_week": None if i % 3 else i % 7,
            "slot_s": 3600 + i % 7 * 86400 if i % 3 == 0 else 3600,
            "next_run_at": now - dt.timedelta(seconds=5),
            "expected_duration_s": 600.0,
            "duration_samples": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(sa.delete(Run))
        connection.execute(sa.delete(Schedule))
        for start in range(0, count, 20000):
            connection.execute(sa.insert(Schedule), rows[start : start + 20000])


def bench_tick(url: str, broker_url: str, sizes: list[int], raw_count: int) -> list[str]:
    from workers import tasks
    from workers.celery_app import app, configure

    settings = Settings.from_env(
        {
            "DATABASE_URL": url,
            "BROKER_URL": broker_url,
            "INFLIGHT_CAP": "10000000",
            "LOG_LEVEL": "WARNING",
        }
    )
    configure(settings, broker_url)

    @app.task(name="si.bench.noop", queue="bench")
    def noop(index: int) -> None:  # pragma: no cover - never consumed
        pass

    broker = redis.Redis.from_url(broker_url)
    engine = make_engine(url)
    lines = []
    raw = raw_publish_rate(app, raw_count, broker)
    lines.append(
        f"raw Celery publish, no-op tasks, apply_async one by one: {raw:,.0f} msg/s "
        f"({raw_count:,} messages)"
    )
    piped = raw_publish_rate(app, raw_count, broker, batch=tasks.PUBLISH_BATCH)
    lines.append(
        f"raw Celery publish, no-op tasks, apply_async in producer.batch({tasks.PUBLISH_BATCH}): "
        f"{piped:,.0f} msg/s"
    )
    started = time.perf_counter()
    tasks._publish(noop, [(index,) for index in range(raw_count)])
    fastest = raw_count / (time.perf_counter() - started)
    broker.delete("bench", "create")
    lines.append(
        f"raw Celery publish, no-op tasks, app.amqp in producer.batch (the tick's own path): "
        f"{fastest:,.0f} msg/s"
    )
    sessions = make_session_factory(engine)
    for size in sizes:
        # A cap of 1,000 is a large cloud's: every due schedule becomes a run, the cap's worth
        # are admitted and published. An unbounded cap publishes every run: the dispatch rate.
        for cap in (1000, 10_000_000):
            seed_due_schedules(engine, size)
            with transaction(sessions) as session:
                set_inflight_cap(session, cap)
            broker.delete("create")
            wanted = min(size, cap)
            started = time.perf_counter()
            summary = tasks.tick.run()
            while summary["runs_made"] < size or summary["admitted"] < wanted:
                more = tasks.tick.run()
                summary = {k: summary[k] + more[k] for k in summary}
                if not more["runs_made"] and not more["admitted"]:
                    break
            elapsed = time.perf_counter() - started
            published = broker.llen("create")
            with engine.connect() as connection:
                runs = connection.scalar(sa.select(sa.func.count()).select_from(Run))
            line = (
                f"tick, {size:>7,} due, cap {cap:>10,}: {elapsed:6.2f} s, {runs:,} runs made, "
                f"{published:,} create messages published"
            )
            if cap >= size:
                rate = size / elapsed
                line += (
                    f", {rate:,.0f} runs/s dispatched; ratio to the raw rates above: "
                    f"{rate / raw:.2f}, {rate / piped:.2f}, {rate / fastest:.2f}"
                )
            if size == 10000:
                line += "   (target: < 2 s)"
            lines.append(line)
            broker.delete("create")
    engine.dispose()
    return lines


def seed_fleet(engine: sa.Engine, images: int) -> list[str]:
    """`images` servers of the simulated cloud with a daily schedule each, not yet due."""
    with engine.begin() as connection:
        connection.execute(sa.delete(Run))
        connection.execute(sa.delete(Schedule))
    cloud = SimulatedDriver(make_session_factory(engine))
    servers = cloud.add_servers("bench", images, disk_gb=10)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Schedule),
            [
                {
                    "tenant_id": f"bench-{index % TENANTS}",
                    "server_id": s,
                    "server_name": "b",
                    "retention": 1,
                    "day_of_week": None,
                    "slot_s": 3600,
                    "next_run_at": later,
                    "expected_duration_s": 60.0,
                    "duration_samples": 0,
                    "created_at": later,
                    "updated_at": later,
                }
                for index, s in enumerate(servers)
            ],
        )
        # The simulated servers belong to the schedules' tenants.
        connection.execute(
            sa.text(
                "UPDATE sim_servers SET tenant_id = schedules.tenant_id FROM schedules "
                "WHERE schedules.server_id = sim_servers.id"
            )
        )
    return servers


def reset_counts(broker: redis.Redis) -> None:
    broker.config_resetstat()
    broker.delete(counted.STATEMENTS, counted.TRANSACTIONS, counted.PINGS, counted.TASKS)


def counts(broker: redis.Redis) -> dict[str, int]:
    """What the workers did since `reset_counts`: statements, transactions, messages."""
    stats = broker.info("commandstats")
    return {
        "statements": int(broker.get(counted.STATEMENTS) or 0),
        "transactions": int(broker.get(counted.TRANSACTIONS) or 0),
        "checkouts": int(broker.get(counted.PINGS) or 0),
        "published": stats.get("cmdstat_lpush", {}).get("calls", 0),
        **{
            name.decode(): int(value)
            for name, value in broker.hgetall(counted.TASKS).items()
            if name != counted.NOOP.encode()
        },
    }


def noop_rate(broker: redis.Redis, count: int) -> float:
    """No-op tasks through the same worker processes: what a message costs with no work."""
    from workers import tasks
    from workers.celery_app import app

    noop = app.tasks[counted.NOOP]  # registered by bench_tick

    def consumed() -> int:
        return int(broker.hget(counted.TASKS, counted.NOOP) or 0)

    tasks._publish(noop, [(0,)])
    wait_for(lambda: consumed() >= 1, 120, "the workers to start")
    started = time.perf_counter()
    tasks._publish(noop, [(index,) for index in range(count)])
    wait_for(lambda: consumed() >= count + 1, 600, "the no-op tasks", interval=0.05)
    return count / (time.perf_counter() - started)


def bench_end_to_end(
    url: str, redis_server: RedisServer, args: argparse.Namespace, workdir: Path
) -> list[str]:
    engine = make_engine(url)
    seed_fleet(engine, args.images)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BROKER_URL": redis_server.url,
        "TICK_INTERVAL_S": "0.5",
        "POLL_INTERVAL_S": "0.5",
        "SIM_SECONDS_PER_GB": "0.05",
        "INFLIGHT_CAP": str(args.cap),
        "LOG_LEVEL": "WARNING",
        "STATE_DIR": str(workdir),
    }
    counting = [sys.executable, "-m", "tests.bench.counted", redis_server.url]
    worker = ["worker", "--concurrency", str(args.concurrency), "--pool", args.pool]
    processes = [
        ServiceProcess(worker, env, workdir / f"w{i}.log", command=counting)
        for i in range(args.workers)
    ]
    broker = redis.Redis.from_url(redis_server.url)

    def finished() -> int:
        with engine.connect() as connection:
            return connection.scalar(
                sa.select(sa.func.count()).select_from(Run).where(Run.state == "done")
            )

    try:
        floor = noop_rate(broker, args.raw // 4)
        reset_counts(broker)
        with engine.begin() as connection:
            connection.execute(sa.update(Schedule).values(next_run_at=dt.datetime.now(dt.UTC)))
        processes.append(
            ServiceProcess(
                ["beat", "--schedule-file", str(workdir / "beat")], env, workdir / "beat.log"
            )
        )
        started = time.perf_counter()
        wait_for(lambda: finished() >= args.images, 900, "the images", interval=0.2)
        elapsed = time.perf_counter() - started
        done = counts(broker)
    finally:
        for process in processes:
            process.stop()
        engine.dispose()
    rate = args.images / elapsed
    per_run = {name: value / args.images for name, value in done.items()}
    shape = f"{args.workers} worker process(es) x {args.concurrency} ({args.pool})"
    return [
        f"no-op Celery tasks through {shape}: {floor:,.0f} tasks/s (the floor)",
        f"end to end: {args.images} images over {TENANTS} tenants (0.5 s each in the cloud, "
        f"cap {args.cap}) with {shape}: {elapsed:.1f} s, {rate:.1f} runs finished/s; "
        f"ratio to the no-op rate: {rate / floor:.3f}",
        "per run: " + ", ".join(f"{name} {value:.2f}" for name, value in sorted(per_run.items())),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--raw", type=int, default=20000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each")
    parser.add_argument("--pool", default="prefork", help="Celery pool type of each")
    parser.add_argument("--cap", type=int, default=100, help="images in flight at most")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="si-bench-pipeline-"))
    admin, url = fresh_database(workdir)
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    print("== pipeline benchmark ==", flush=True)
    try:
        for line in bench_tick(url, redis_server.url, sizes, args.raw):
            print(line, flush=True)
        if args.images:
            for line in bench_end_to_end(url, redis_server, args, workdir):
                print(line, flush=True)
    finally:
        redis_server.stop()
        drop(admin, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
