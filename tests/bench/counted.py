"""`scheduled-images` with the database statements and the tasks of each process counted into
the benchmark's own Redis, so that the pipeline benchmark can divide them by the runs made.

    python -m tests.bench.counted REDIS_URL worker --concurrency 2

Each statement SQLAlchemy sends is counted where it is sent (a cursor execute), and so is
each transaction's end (COMMIT or ROLLBACK: a round trip of its own); the counts go to Redis
after each task, in one pipelined round trip, under `STATEMENTS`, `TRANSACTIONS` and `TASKS`
(a hash by task name).
"""

from __future__ import annotations

import os
import sys

import redis
import sqlalchemy as sa
from celery import signals

STATEMENTS = "bench:statements"
TRANSACTIONS = "bench:transactions"
TASKS = "bench:tasks"
PINGS = "bench:pings"
#: A task that does nothing, on the create queue.
NOOP = "si.bench.noop"

_counts = {STATEMENTS: 0, TRANSACTIONS: 0, PINGS: 0}
_broker: redis.Redis | None = None
_pid = 0


def _count(key: str) -> None:
    _counts[key] += 1


def _flush(task_name: str) -> None:
    global _broker, _pid
    if _broker is None or _pid != os.getpid():
        _broker, _pid = redis.Redis.from_url(os.environ["BENCH_COUNT_URL"]), os.getpid()
    with _broker.pipeline(transaction=False) as pipe:
        for key, value in _counts.items():
            if value:
                pipe.incrby(key, value)
                _counts[key] = 0
        pipe.hincrby(TASKS, task_name, 1)
        pipe.execute()


def install() -> None:
    from workers.celery_app import app

    # What a message costs the workers with no work in it: the benchmark's floor.
    @app.task(name=NOOP, ignore_result=True)
    def noop(index: int) -> None:
        pass

    sa.event.listen(sa.Engine, "before_cursor_execute", lambda *_: _count(STATEMENTS))
    sa.event.listen(sa.Engine, "commit", lambda *_: _count(TRANSACTIONS))
    sa.event.listen(sa.Engine, "rollback", lambda *_: _count(TRANSACTIONS))
    # pool_pre_ping's probe on checkout is a round trip that no cursor event sees.
    sa.event.listen(sa.pool.Pool, "checkout", lambda *_: _count(PINGS))

    @signals.task_postrun.connect(weak=False)
    def _after_task(sender=None, **_: object) -> None:  # type: ignore[no-untyped-def]
        _flush(sender.name if sender is not None else "?")


def main() -> int:
    os.environ["BENCH_COUNT_URL"] = sys.argv[1]
    install()
    from scheduled_images.cli import main as cli

    sys.argv = ["scheduled-images", *sys.argv[2:]]
    return cli()


if __name__ == "__main__":
    sys.exit(main())
