"""Fairness drill: two tenants asking for 30 and 10 run-nows at once under a cap of 4 (the
big tenant asking first, so its runs are the older), images of uneven length so that places
free one at a time. Printed for the old turn order ("the first run of each tenant, then the
second...", restarted at every admission) and for max-min fair shares, in the same run:

- on a simulated clock, the admission functions alone (the old order is written out below);
- with real Celery worker and beat processes on the simulated cloud: this checkout's code,
  and the code before fair shares (`--before REV`, default the parent of the commit that
  brought them in), unpacked with `git archive` and put first on the workers' PYTHONPATH.

For each: where the small tenant's last image finished (of 40), and how many places the small
tenant held while both waited and every place was taken. With fair shares it holds 2 of 4
and finishes about 20th; with the old order the big tenant wins every place freed alone.

    python -m tests.bench.bench_fairness [--before REV] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from common.db import make_engine, make_session_factory
from scheduler.admission import Candidate, InFlight, pick_runs
from tests.bench.bench_pipeline import fresh_database
from tests.support.databases import drop
from tests.support.fairness import (
    ask_run_nows,
    finish_positions,
    full_while_several_wait,
    watch,
)
from tests.support.processes import RedisServer

FLEETS = {"big": 30, "small": 10}
CAP = 4
T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
Picker = Callable[[list[Candidate], int, dict[str, int], set[str]], list[int]]


def disk_gb(index: int) -> int:
    """40 to 140 GB, uneven: 0.8 to 2.8 s an image at 0.02 s a GB, so that with polls every
    0.1 s the places free one at a time, as they do in a real cloud."""
    return 40 + index * 37 % 101


def turns_restarted(waiting: list[Candidate], places: int, held, busy) -> list[int]:  # type: ignore[no-untyped-def]
    """The old order: every tenant's first run, then every tenant's second..., oldest first
    within a turn, whatever each tenant holds already."""
    by_tenant: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(waiting, key=lambda c: (c.scheduled_for, c.run_id)):
        by_tenant[candidate.tenant_id].append(candidate)
    order = sorted(
        (turn, c.scheduled_for, c.run_id, c)
        for queue in by_tenant.values()
        for turn, c in enumerate(queue)
    )
    picked: list[int] = []
    taken = set(busy)
    for *_, candidate in order:
        if len(picked) < places and candidate.server_id not in taken:
            taken.add(candidate.server_id)
            picked.append(candidate.run_id)
    return picked


def fair(waiting: list[Candidate], places: int, held, busy) -> list[int]:  # type: ignore[no-untyped-def]
    return pick_runs(waiting, places, held, busy)


def simulate(pick: Picker) -> tuple[int, Counter[int]]:
    """Event by event: each finished image frees its place, which is given out at once."""
    waiting, duration, index = [], {}, 0
    for tenant, size in FLEETS.items():
        for _ in range(size):
            waiting.append(Candidate(index, tenant, f"s{index}", T0 + dt.timedelta(seconds=index)))
            duration[index] = disk_gb(index) * 0.02
            index += 1
    tenant_of = {c.run_id: c.tenant_id for c in waiting}
    running: dict[int, float] = {}  # run -> when it finishes
    clock, finished, small_held = 0.0, [], Counter()
    while waiting or running:
        taken = InFlight.of((tenant_of[r], f"s{r}") for r in running)
        admitted = pick(waiting, CAP - taken.total, dict(taken.held), set(taken.busy_servers))
        running.update({r: clock + duration[r] for r in admitted})
        waiting = [c for c in waiting if c.run_id not in admitted]
        if {c.tenant_id for c in waiting} == set(FLEETS):
            small_held[sum(tenant_of[r] == "small" for r in running)] += 1
        run = min(running, key=lambda r: (running[r], r))
        clock = running.pop(run)
        finished.append(tenant_of[run])
    last_small = max(i for i, tenant in enumerate(finished, 1) if tenant == "small")
    return last_small, small_held


def drill(pipeline, **worker_env: str) -> tuple[int, Counter[int], int]:  # type: ignore[no-untyped-def]
    """The real service; returns the small tenant's last position, its shares, the spread."""
    ask_run_nows(pipeline, FLEETS, disk_gb)
    processes = [
        pipeline.worker(concurrency=4, INFLIGHT_CAP=str(CAP), POLL_INTERVAL_S="0.1", **worker_env),
        pipeline.beat(INFLIGHT_CAP=str(CAP), POLL_INTERVAL_S="0.1", **worker_env),
    ]
    try:
        samples = watch(pipeline.sessions, lambda s: not s.waiting and not s.total, timeout=180)
    finally:
        for process in processes:
            process.stop()
    judged = full_while_several_wait(samples, CAP)
    shares = Counter(s.held.get("small", 0) for s in judged)
    spread = max((s.spread() for s in judged), default=0)
    return max(finish_positions(pipeline.sessions)["small"]), shares, spread


def old_tree(rev: str, workdir: Path) -> Path:
    """The project as it was at `rev`, unpacked for the workers' PYTHONPATH."""
    target = workdir / "before"
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def default_before() -> str:
    found = subprocess.run(
        ["git", "rev-list", "-1", "--grep=^Admission by max-min fair share", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{found}^" if found else ""


def shares_text(shares: Counter[int]) -> str:
    total = sum(shares.values())
    if not total:
        return "no sample with both waiting"
    spread = ", ".join(f"{held}: {count / total:.0%}" for held, count in sorted(shares.items()))
    return f"places the small tenant held ({total} samples) {spread}"


def run_pipeline(before: str) -> list[str]:
    from common.compute.simulated import SimulatedDriver
    from common.models import Base
    from tests.e2e.conftest import Pipeline

    workdir = Path(tempfile.mkdtemp(prefix="si-bench-fairness-"))
    admin, url = fresh_database(workdir)
    engine = make_engine(url)
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    lines = []
    try:
        runs: list[tuple[str, Path | None]] = [("after (fair share, this checkout)", None)]
        if before:
            runs.insert(0, (f"before (turn order, {before})", old_tree(before, workdir)))
        for label, tree in runs:
            with engine.begin() as connection:
                names = ", ".join(t.name for t in Base.metadata.sorted_tables)
                connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            sessions = make_session_factory(engine)
            pipeline = Pipeline(url, redis_server, sessions, SimulatedDriver(sessions), workdir)
            if tree is None:
                last, shares, spread = drill(pipeline)
            else:
                # Celery puts its working folder first on sys.path: the old tree, there too.
                with contextlib.chdir(tree):
                    last, shares, spread = drill(pipeline, PYTHONPATH=str(tree))
            lines.append(
                f"pipeline, {label}: small tenant's last image finished {last}th of 40; "
                f"{shares_text(shares)}; widest spread {spread}"
            )
            print(lines[-1], flush=True)
    finally:
        redis_server.stop()
        engine.dispose()
        drop(admin, url)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default=None, help="git revision with the old turn order")
    parser.add_argument("--no-pipeline", action="store_true", help="the simulated clock only")
    args = parser.parse_args()
    print("== fairness: 30 and 10 run-nows under a cap of 4 ==", flush=True)
    for label, pick in (("before (turn order)", turns_restarted), ("after (fair share)", fair)):
        last, shares = simulate(pick)
        print(
            f"simulated clock, {label}: small tenant's last image finished {last}th of 40; "
            f"{shares_text(shares)}",
            flush=True,
        )
    if not args.no_pipeline:
        before = default_before() if args.before is None else args.before
        run_pipeline(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
