"""A run's image step against PostgreSQL and the simulated cloud: the image a step adopts as
made before a restart is never one another run already recorded."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from common import schedules
from common.db import transaction
from common.models import Run
from common.runs import RunState, request_run
from scheduler.admission import admit_waiting_runs
from workers.runtime import Runtime
from workers.steps import create_image

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=dt.UTC)


def _scheduled_server(sessions, cloud) -> str:  # type: ignore[no-untyped-def]
    [server] = cloud.add_servers("t1", 1, disk_gb=1)
    with transaction(sessions) as session:
        schedules.upsert(
            session,
            tenant_id="t1",
            server_id=server,
            server_name="web",
            retention=2,
            day_of_week=None,
            slot_s=3600,
            default_duration_s=60,
            now=NOW,
        )
    return server


def _admitted_run(sessions, server: str) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        run = request_run(session, "t1", server, NOW).id
    with transaction(sessions) as session:
        assert admit_waiting_runs(session, cap=10, now=NOW, lease_s=30, run_timeout_s=600) == [run]
    return run


def _finish(sessions, run_id: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == RunState.SAVING
        run.state, run.finished_at = RunState.DONE, NOW


def test_two_runs_stamped_in_the_same_second_make_two_images(sessions, settings, cloud) -> None:
    """A manual run right after another gets the same name (the stamp is whole seconds): the
    first run's image is not the second's, made before a restart."""
    server = _scheduled_server(sessions, cloud)
    # The simulated image is done at once, so the server is free for the second run.
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW + dt.timedelta(hours=1))
    first = _admitted_run(sessions, server)
    create_image(rt, first)
    _finish(sessions, first)
    second = _admitted_run(sessions, server)
    create_image(rt, second)
    with sessions() as session:
        runs = {r.id: r for r in session.scalars(sa.select(Run))}
    assert runs[first].attempt_stamp == runs[second].attempt_stamp
    assert runs[second].state == RunState.SAVING
    images = cloud.list_server_images("t1", server)
    assert len(images) == 2
    assert {runs[first].image_id, runs[second].image_id} == {i.id for i in images}


def test_an_image_made_before_a_restart_is_adopted_not_made_again(
    sessions, settings, cloud
) -> None:
    server = _scheduled_server(sessions, cloud)
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW + dt.timedelta(hours=1))
    run_id = _admitted_run(sessions, server)
    real_create = cloud.create_image
    made: list[str] = []

    def create_then_die(*args):  # type: ignore[no-untyped-def]
        made.append(real_create(*args))
        raise SystemExit  # the worker killed after the cloud made the image

    cloud.create_image = create_then_die
    with pytest.raises(SystemExit):
        create_image(rt, run_id)
    cloud.create_image = real_create
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == RunState.CREATING and run.image_id is None
    create_image(rt, run_id)
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == RunState.SAVING
        assert run.image_id == made[0]
    assert [i.id for i in cloud.list_server_images("t1", server)] == made
