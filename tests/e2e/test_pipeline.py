"""The image pipeline for real: PostgreSQL, Redis, Celery worker and beat processes, and the
simulated cloud on a fast clock. Each test checks a rule of DESIGN.md under a fault."""

from __future__ import annotations

import collections

import pytest
import requests

from common.runs import RunState
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.slow


def scheduled(images, server):  # type: ignore[no-untyped-def]
    return [
        i
        for i in images
        if i.image_metadata.get("org.openstack__1__created_by") == "scheduled_images_service"
        and i.image_metadata.get("instance_uuid") == server
    ]


def test_daily_and_weekly_schedules_make_their_images(pipeline) -> None:
    daily, weekly = pipeline.cloud.add_servers("tenant-a", 2, disk_gb=10)
    pipeline.enable("tenant-a", daily, retention=2)
    pipeline.enable("tenant-a", weekly, retention=2, day_of_week=5)
    pipeline.worker()
    pipeline.beat()
    runs = pipeline.wait_runs_final(2, timeout=60)
    assert {r.state for r in runs} == {RunState.DONE}, [(r.state, r.error) for r in runs]
    by_server = {r.server_id: r for r in runs}
    [daily_image] = pipeline.images(daily)
    [weekly_image] = pipeline.images(weekly)
    assert daily_image.name.startswith("Daily-srv-")
    assert weekly_image.name.startswith("Weekly-srv-")
    assert by_server[daily].image_id == daily_image.id
    assert daily_image.image_metadata == {
        "org.openstack__1__created_by": "scheduled_images_service",
        "instance_uuid": daily,
    }
    assert by_server[weekly].weekly and not by_server[daily].weekly


def test_retention_keeps_newest_and_never_touches_manual_or_other_servers(pipeline) -> None:
    server, other = pipeline.cloud.add_servers("tenant-a", 2, disk_gb=5)
    pipeline.enable("tenant-a", server, retention=2, due=False)
    pipeline.enable("tenant-a", other, retention=1, due=False)
    manual = pipeline.cloud.create_manual_image(server)
    # Another server's scheduled image: retention of `server` must never count it.
    foreign = pipeline.cloud.create_image(
        "tenant-a",
        other,
        "Daily-other-1",
        {"org.openstack__1__created_by": "scheduled_images_service", "instance_uuid": other},
    )
    pipeline.worker()
    pipeline.beat()
    made = []
    for count in range(1, 5):
        pipeline.run_now("tenant-a", server)
        runs = pipeline.wait_runs_final(count, timeout=40)
        made.append(runs[-1].image_id)
    wait_for(lambda: len(scheduled(pipeline.images(server), server)) == 2, 20, "retention to prune")
    remaining = pipeline.images(server)
    assert {i.id for i in scheduled(remaining, server)} == set(made[-2:])
    assert manual in {i.id for i in remaining}
    assert foreign in {i.id for i in pipeline.images(other)}


def test_worker_killed_while_creating_makes_exactly_one_image(pipeline) -> None:
    [server] = pipeline.cloud.add_servers("tenant-a", 1, disk_gb=5, fault="slow_create")
    pipeline.enable("tenant-a", server)
    first = pipeline.worker()
    pipeline.beat()
    # The cloud has made the image, but the create call has not returned to the worker.
    wait_for(lambda: pipeline.images(server), 30, "the image to exist")
    first.kill()
    pipeline.cloud.set_fault(server, None)
    pipeline.worker()
    [run] = pipeline.wait_runs_final(1, timeout=60)
    assert run.state == RunState.DONE, run.error
    images = pipeline.images(server)
    assert len(images) == 1
    assert run.image_id == images[0].id
    assert run.attempts == 1


def test_worker_killed_while_polling_finishes_the_run(pipeline) -> None:
    [server] = pipeline.cloud.add_servers("tenant-a", 1, disk_gb=200)  # 4 s to save
    pipeline.enable("tenant-a", server)
    first = pipeline.worker()
    pipeline.beat()
    wait_for(lambda: [r for r in pipeline.runs() if r.state == "saving"], 30, "saving")
    first.kill()
    pipeline.worker()
    [run] = pipeline.wait_runs_final(1, timeout=60)
    assert run.state == RunState.DONE, run.error
    assert len(pipeline.images(server)) == 1


def test_redis_restart_loses_nothing_and_doubles_nothing(pipeline) -> None:
    servers = pipeline.cloud.add_servers("tenant-a", 12, disk_gb=100)  # 2 s each
    for server in servers:
        pipeline.enable("tenant-a", server)
    pipeline.worker(concurrency=3)
    pipeline.beat()
    wait_for(
        lambda: [r for r in pipeline.runs() if r.state in ("creating", "saving")],
        30,
        "runs in flight",
    )
    pipeline.redis.restart()
    runs = pipeline.wait_runs_final(12, timeout=90)
    assert {r.state for r in runs} == {RunState.DONE}, [(r.state, r.error) for r in runs]
    for server in servers:
        assert len(pipeline.images(server)) == 1


def test_two_beats_never_run_a_schedule_twice(pipeline) -> None:
    servers = pipeline.cloud.add_servers("tenant-a", 20, disk_gb=5)
    for server in servers:
        pipeline.enable("tenant-a", server)
    pipeline.worker(concurrency=3)
    pipeline.beat()
    pipeline.beat()
    runs = pipeline.wait_runs_final(20, timeout=60)
    assert len(runs) == 20
    assert collections.Counter(r.server_id for r in runs).most_common(1)[0][1] == 1
    for server in servers:
        assert len(pipeline.images(server)) == 1


def test_compute_failures_end_in_a_clear_state(pipeline) -> None:
    cloud = pipeline.cloud
    [failing] = cloud.add_servers("tenant-a", 1, fault="create_error")  # the API answers 500
    [erroring] = cloud.add_servers("tenant-a", 1, fault="image_error")  # image ends in ERROR
    [busy] = cloud.add_servers("tenant-a", 1, fault="busy")  # 409: busy
    [hanging] = cloud.add_servers("tenant-a", 1, fault="create_hang")  # call hangs
    [gone] = cloud.add_servers("tenant-a", 1)  # 404: server gone
    for server in (failing, erroring, busy, hanging, gone):
        pipeline.enable("tenant-a", server)
    cloud.remove_server(gone)
    pipeline.worker(concurrency=3)
    pipeline.beat()

    def settled():  # type: ignore[no-untyped-def]
        runs = {r.server_id: r for r in pipeline.runs()}
        final = [runs.get(s) for s in (failing, erroring, hanging, gone)]
        waiting = runs.get(busy)
        if all(r is not None and r.finished_at for r in final) and waiting and waiting.error:
            return runs
        return None

    runs = wait_for(settled, 60, "the failing runs to settle", interval=0.3)
    assert runs[failing].state == "failed"
    assert runs[failing].attempts == 2
    assert "create failed" in runs[failing].error
    assert runs[erroring].state == "failed"
    assert "ERROR" in runs[erroring].error
    assert runs[hanging].state == "failed"
    assert "did not answer" in runs[hanging].error
    assert runs[gone].state == "cancelled"
    assert "no longer exists" in runs[gone].error
    # A busy server's run goes round pending -> admitted -> creating -> pending every
    # BUSY_RETRY_S, so any of those may be read here; it must never end nor spend an attempt.
    assert runs[busy].state in ("pending", "admitted", "creating")
    assert runs[busy].finished_at is None
    assert "busy" in runs[busy].error

    def busy_waits():  # type: ignore[no-untyped-def]
        run = {r.server_id: r for r in pipeline.runs()}[busy]
        return run if run.state == "pending" else None

    waiting = wait_for(busy_waits, 10, "the busy server's run to wait again", interval=0.2)
    assert waiting.attempts == 0
    assert waiting.finished_at is None
    assert pipeline.images(busy) == []
    assert pipeline.images(failing) == []
    assert len(pipeline.images(erroring)) == 2  # one per attempt, left for inspection


def test_cap_holds_across_hundreds_of_runs(pipeline) -> None:
    servers = pipeline.cloud.add_servers("tenant-a", 120, disk_gb=10)
    servers += pipeline.cloud.add_servers("tenant-b", 80, disk_gb=10)
    for server in servers[:120]:
        pipeline.enable("tenant-a", server)
    for server in servers[120:]:
        pipeline.enable("tenant-b", server)
    pipeline.worker(concurrency=4, INFLIGHT_CAP="5")
    pipeline.beat(INFLIGHT_CAP="5")
    import sqlalchemy as sa

    from common.models import Run, SimImage
    from common.runs import IN_FLIGHT, in_states

    peak_runs = peak_images = 0
    done = 0
    deadline = 150
    import time

    started = time.monotonic()
    while done < 200 and time.monotonic() - started < deadline:
        with pipeline.sessions() as session:
            in_flight = session.scalar(
                sa.select(sa.func.count()).select_from(Run).where(in_states(IN_FLIGHT))
            )
            in_progress = session.scalar(
                sa.select(sa.func.count())
                .select_from(SimImage)
                .where(SimImage.done_at > sa.func.now())
            )
            done = session.scalar(
                sa.select(sa.func.count()).select_from(Run).where(Run.finished_at.is_not(None))
            )
        peak_runs = max(peak_runs, in_flight)
        peak_images = max(peak_images, in_progress)
        time.sleep(0.05)
    runs = pipeline.wait_runs_final(200, timeout=30)
    assert {r.state for r in runs} == {RunState.DONE}
    assert peak_runs <= 5
    assert peak_images <= 5
    assert peak_runs == 5  # the cap was used, not just respected


def test_an_image_that_never_finishes_times_out_and_frees_its_place(pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    [hanging] = pipeline.cloud.add_servers("tenant-a", 1, disk_gb=5, fault="image_hang")
    [healthy] = pipeline.cloud.add_servers("tenant-a", 1, disk_gb=5)
    pipeline.enable("tenant-a", hanging)
    port = free_port()
    pipeline.worker(
        RUN_TIMEOUT_S="4",
        INFLIGHT_CAP="1",
        METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    pipeline.beat(RUN_TIMEOUT_S="4", INFLIGHT_CAP="1")
    [stuck] = wait_for(lambda: [r for r in pipeline.runs() if r.state == "saving"], 30, "saving")
    pipeline.enable("tenant-a", healthy)  # waits behind the stuck one: the cap is 1
    runs = pipeline.wait_runs_final(2, timeout=60)
    by_server = {r.server_id: r for r in runs}
    assert by_server[hanging].state == "timed_out"
    assert "deadline" in by_server[hanging].error
    assert by_server[healthy].state == RunState.DONE
    assert by_server[healthy].started_at >= by_server[hanging].finished_at
    assert stuck.id == by_server[hanging].id
    # The tick ended the one, a worker step the other: the pool counts both.
    ended = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'si_runs_ended_total{state="timed_out"} 1.0' in ended
    assert 'si_runs_ended_total{state="done"} 1.0' in ended
