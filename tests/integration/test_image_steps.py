"""A run's image steps against PostgreSQL and the simulated cloud (its faults), on an injected
clock: the image a step adopts as made before a restart is never one another run already
recorded; and each branch of create and poll (error then retry, final failure, busy server,
deadline, server gone) ends the run, or sends it back to wait, as its rule says."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from common.compute.base import ComputeError
from common.compute.simulated import SimulatedDriver
from common.db import transaction
from common.models import Run, Schedule, SimImage
from common.runs import IllegalTransition, Reason, RunState, move, request_run
from scheduler import tick
from scheduler.admission import admit_waiting_runs
from tests.support.scheduled import scheduled_server
from workers.runtime import Runtime
from workers.steps import Outcome, create_image, create_images, poll_batch, poll_images

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=dt.UTC)


def _scheduled_server(sessions, cloud, fault: str | None = None) -> str:  # type: ignore[no-untyped-def]
    return scheduled_server(sessions, cloud, "t1", NOW, fault)


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


def test_a_new_attempt_asks_the_cloud_once_and_a_resumed_one_looks_first(
    sessions, settings, cloud
) -> None:
    """Only an attempt stamped before (its message redelivered) can have an image already:
    a new one makes its image without listing the server's."""
    server = _scheduled_server(sessions, cloud)
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW + dt.timedelta(hours=1))
    listings: list[str] = []
    real_list = cloud.list_server_images

    def counted_list(tenant_id, server_id):  # type: ignore[no-untyped-def]
        listings.append(server_id)
        return real_list(tenant_id, server_id)

    cloud.list_server_images = counted_list
    run_id = _admitted_run(sessions, server)
    create_image(rt, run_id)
    assert listings == []
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.state, run.image_id = RunState.CREATING, None  # as if the commit never came
    create_image(rt, run_id)
    assert listings == [server]
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == RunState.SAVING
    assert [i.id for i in real_list("t1", server)] == [run.image_id]


def test_a_batch_makes_each_image_once_even_when_killed_halfway(sessions, settings, cloud) -> None:
    """One message creates the images of several runs. A worker killed after some of them
    were made leaves nothing recorded; the message delivered again adopts those and makes
    the rest, and a third delivery does nothing."""
    servers = [_scheduled_server(sessions, cloud) for _ in range(4)]
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW + dt.timedelta(hours=1))
    run_ids = [_admitted_run(sessions, server) for server in servers]
    real_create = cloud.create_image
    made: list[str] = []

    def die_at_the_third(*args):  # type: ignore[no-untyped-def]
        if len(made) == 2:
            raise SystemExit  # the worker killed amid the batch
        made.append(real_create(*args))
        return made[-1]

    cloud.create_image = die_at_the_third
    with pytest.raises(SystemExit):
        create_images(rt, run_ids)
    cloud.create_image = real_create
    with sessions() as session:
        runs = list(session.scalars(sa.select(Run).where(Run.id.in_(run_ids))))
    assert {(r.state, r.image_id) for r in runs} == {(RunState.CREATING, None)}
    create_images(rt, list(reversed(run_ids)))
    create_images(rt, run_ids)
    with sessions() as session:
        runs = list(session.scalars(sa.select(Run).where(Run.id.in_(run_ids))))
    assert {r.state for r in runs} == {RunState.SAVING}
    for server, run in zip(servers, sorted(runs, key=lambda r: r.id), strict=True):
        assert [i.id for i in cloud.list_server_images("t1", server)] == [run.image_id]
    assert set(made) <= {r.image_id for r in runs}
    assert all(r.attempts == 1 for r in runs)


def test_a_batch_skips_runs_no_longer_to_create(sessions, settings, cloud) -> None:
    """A run that ended, or whose image is already asked for, is left alone in a batch; the
    others are created."""
    servers = [_scheduled_server(sessions, cloud) for _ in range(3)]
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW + dt.timedelta(hours=1))
    saving, cancelled, admitted = (_admitted_run(sessions, server) for server in servers)
    create_image(rt, saving)
    with transaction(sessions) as session:
        run = session.get(Run, cancelled)
        assert run is not None
        run.state, run.finished_at = RunState.CANCELLED, NOW
    create_images(rt, [saving, cancelled, admitted])
    with sessions() as session:
        states = {r.id: r.state for r in session.scalars(sa.select(Run))}
    assert states == {
        saving: RunState.SAVING,
        cancelled: RunState.CANCELLED,
        admitted: RunState.SAVING,
    }
    assert [len(cloud.list_server_images("t1", server)) for server in servers] == [1, 0, 1]


def test_the_first_poll_waits_for_most_of_the_duration_learnt(sessions, settings, cloud) -> None:
    """Not before nine tenths of the duration the server's images took; at the poll interval
    while the server has no history, as its default expectation may be far off."""
    server = _scheduled_server(sessions, cloud)
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW)

    def first_poll(samples: int) -> dt.datetime | None:
        with transaction(sessions) as session:
            schedule = session.scalar(sa.select(Schedule).where(Schedule.server_id == server))
            assert schedule is not None
            schedule.expected_duration_s, schedule.duration_samples = 1200, samples
            session.execute(sa.delete(Run))
        cloud_images = cloud.list_server_images("t1", server)
        for image in cloud_images:
            cloud.delete_image("t1", image.id)
        run_id = _admitted_run(sessions, server)
        create_image(rt, run_id)
        with sessions() as session:
            run = session.get(Run, run_id)
            assert run is not None and run.state == RunState.SAVING
            return run.next_poll_at

    assert settings.poll_interval_s < 1080
    assert first_poll(samples=3) == NOW + dt.timedelta(seconds=1080)
    assert first_poll(samples=0) == NOW + dt.timedelta(seconds=settings.poll_interval_s)


# -- the branches of create and poll ------------------------------------------------------


#: How long after its create call an attempt is polled: the simulated image (1 GB) is done.
POLL_AFTER = dt.timedelta(seconds=1)


class Steps:
    """One server's run driven through admission, create and poll at chosen times; the
    simulated cloud runs on the same clock."""

    def __init__(self, sessions, settings, cloud, fault: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self.now = NOW
        self.sessions, self.settings = sessions, settings
        self.cloud = SimulatedDriver(
            sessions, seconds_per_gb=settings.sim_seconds_per_gb, clock=lambda: self.now
        )
        self.server = _scheduled_server(sessions, cloud, fault)
        with transaction(sessions) as session:
            self.run_id = request_run(session, "t1", self.server, NOW).id

    def admit(self, at: dt.datetime) -> bool:
        with transaction(self.sessions) as session:
            admitted = admit_waiting_runs(
                session, cap=10, now=at, lease_s=30, run_timeout_s=self.settings.run_timeout_s
            )
        return admitted == [self.run_id]

    def create(self, at: dt.datetime) -> Outcome:
        return create_image(self._runtime(at), self.run_id)

    def poll(self, at: dt.datetime) -> Outcome:
        return poll_images(self._runtime(at), "t1", [self.run_id])

    def attempt(self, at: dt.datetime) -> Outcome:
        """Admit and create at `at`, poll POLL_AFTER later: one whole attempt."""
        assert self.admit(at)
        self.create(at)
        return self.poll(at + POLL_AFTER)

    def run(self) -> Run:
        with self.sessions() as session:
            run = session.get(Run, self.run_id)
            assert run is not None
            return run

    def _runtime(self, at: dt.datetime) -> Runtime:
        self.now = at
        return Runtime(self.settings, self.sessions, self.cloud, clock=lambda: at)


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def test_a_failed_image_waits_a_longer_back_off_before_each_retry(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_error")
    first = steps.attempt(NOW)
    run = steps.run()
    assert (run.state, run.attempts, run.reason) == (RunState.PENDING, 1, Reason.IMAGE_ERROR)
    assert run.not_before == NOW + POLL_AFTER + _seconds(settings.retry_delay_s)
    assert run.image_id is None and "retrying" in run.error
    assert first.freed == 1 and first.prune == []  # its place is freed; nothing to prune yet
    assert not steps.admit(run.not_before - _seconds(1))  # not before the back-off
    second_at = run.not_before
    steps.attempt(second_at)
    run = steps.run()
    assert (run.state, run.attempts) == (RunState.PENDING, 2)
    assert run.not_before == second_at + POLL_AFTER + _seconds(2 * settings.retry_delay_s)


def test_the_last_failed_attempt_fails_the_run_with_its_reason(sessions, settings, cloud) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_error")
    at = NOW
    for _ in range(settings.retry_attempts - 1):
        steps.attempt(at)
        at = steps.run().not_before
    outcome = steps.attempt(at)
    run = steps.run()
    assert (run.state, run.reason) == (RunState.FAILED, Reason.IMAGE_ERROR)
    assert run.attempts == settings.retry_attempts
    assert f"(attempt {run.attempts} of {settings.retry_attempts})" in run.error
    assert run.finished_at == at + POLL_AFTER
    assert outcome.prune == [("t1", steps.server)] and outcome.freed == 1
    # One image per attempt, left in the cloud for inspection.
    assert len(cloud.list_server_images("t1", steps.server)) == settings.retry_attempts


def test_a_create_error_is_an_attempt_retried_like_an_image_error(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="create_error")
    assert steps.admit(NOW)
    outcome = steps.create(NOW)
    run = steps.run()
    assert (run.state, run.attempts, run.reason) == (RunState.PENDING, 1, Reason.CREATE_ERROR)
    assert run.error.startswith("create failed:")
    assert outcome.freed == 1
    assert cloud.list_server_images("t1", steps.server) == []


def test_a_busy_server_is_no_attempt_the_run_waits_and_keeps_no_deadline(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="busy")
    assert steps.admit(NOW)
    outcome = steps.create(NOW)
    run = steps.run()
    assert (run.state, run.attempts, run.reason) == (RunState.PENDING, 0, Reason.SERVER_BUSY)
    assert run.not_before == NOW + _seconds(settings.busy_retry_s)
    assert run.deadline_at is None and run.image_id is None
    assert outcome.freed == 1 and outcome.prune == []
    # Skipped after its window, it still says the busy server is why.
    with transaction(sessions) as session:
        assert tick.skip_missed_runs(session, run.start_by + _seconds(1)) == 1
    run = steps.run()
    assert (run.state, run.reason) == (RunState.SKIPPED, Reason.SERVER_BUSY)


def test_the_duration_learnt_is_the_clouds_not_the_time_the_poll_saw_it(
    sessions, settings, cloud
) -> None:
    """A poll comes some time after the image finished; learning from the poll's time would
    make each expectation, and so each first poll, later than the last."""
    steps = Steps(sessions, settings.replace(sim_seconds_per_gb=120), cloud)
    assert steps.admit(NOW)
    steps.create(NOW)
    run = steps.run()
    with sessions() as session:
        image = session.get(SimImage, run.image_id)
        assert image is not None
        took = image.done_at.timestamp() - (run.attempt_stamp or 0)
    steps.poll(NOW + dt.timedelta(minutes=10))
    assert steps.run().state == RunState.DONE
    with sessions() as session:
        schedule = session.scalar(sa.select(Schedule).where(Schedule.server_id == steps.server))
        assert schedule is not None
        assert schedule.duration_samples == 1
        assert schedule.expected_duration_s == pytest.approx(took)
        assert 60 < took < 600


def test_an_image_still_saving_is_polled_again_until_the_deadline(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_hang")
    assert steps.admit(NOW)
    steps.create(NOW)
    deadline = steps.run().deadline_at
    assert deadline == NOW + _seconds(settings.run_timeout_s)
    at = deadline - _seconds(1)
    assert steps.poll(at) == Outcome()
    run = steps.run()
    assert run.state == RunState.SAVING
    assert run.next_poll_at == at + _seconds(settings.poll_interval_s)


def test_a_poll_past_the_deadline_times_the_run_out_and_frees_its_place(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_hang")
    assert steps.admit(NOW)
    steps.create(NOW)
    late = steps.run().deadline_at + _seconds(1)
    outcome = steps.poll(late)
    run = steps.run()
    assert (run.state, run.reason) == (RunState.TIMED_OUT, Reason.TIMED_OUT)
    assert "deadline" in run.error and run.finished_at == late and run.next_poll_at is None
    assert outcome.freed == 1 and outcome.prune == [("t1", steps.server)]


def test_the_tick_times_out_a_late_run_as_a_poll_does(sessions, settings, cloud) -> None:
    by_poll = Steps(sessions, settings, cloud, fault="image_hang")
    by_tick = Steps(sessions, settings, cloud, fault="image_hang")
    with transaction(sessions) as session:
        admitted = admit_waiting_runs(session, 10, NOW, 30, settings.run_timeout_s)
    assert sorted(admitted) == [by_poll.run_id, by_tick.run_id]
    by_poll.create(NOW)
    by_tick.create(NOW)
    late = NOW + _seconds(settings.run_timeout_s + 1)
    by_poll.poll(late)
    with transaction(sessions) as session:
        assert tick.time_out_runs(session, late) == [("t1", by_tick.server)]
    polled, ticked = by_poll.run(), by_tick.run()
    fields = ("state", "reason", "error", "finished_at", "lease_until")
    assert [getattr(ticked, f) for f in fields] == [getattr(polled, f) for f in fields]


def test_a_retry_keeps_its_first_deadline_and_never_starts_past_it(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_error")
    steps.attempt(NOW)
    run = steps.run()
    deadline = NOW + _seconds(settings.run_timeout_s)
    assert run.deadline_at == deadline and run.start_by <= deadline
    assert steps.admit(run.not_before)
    assert steps.run().deadline_at == deadline


def test_a_failed_attempt_with_no_time_for_a_retry_fails_the_run_now(
    sessions, settings, cloud
) -> None:
    steps = Steps(sessions, settings, cloud, fault="image_error")
    assert steps.admit(NOW)
    steps.create(NOW)
    # The back-off would end past the deadline: no later attempt could start in time.
    at = NOW + _seconds(settings.run_timeout_s - settings.retry_delay_s)
    outcome = steps.poll(at)
    run = steps.run()
    assert (run.state, run.reason, run.attempts) == (RunState.FAILED, Reason.IMAGE_ERROR, 1)
    assert "deadline" in run.error
    assert outcome.prune == [("t1", steps.server)]


def test_a_server_gone_cancels_the_run_and_stops_its_schedule(sessions, settings, cloud) -> None:
    steps = Steps(sessions, settings, cloud)
    cloud.remove_server(steps.server)
    assert steps.admit(NOW)
    outcome = steps.create(NOW)
    run = steps.run()
    assert (run.state, run.reason) == (RunState.CANCELLED, Reason.SERVER_GONE)
    assert outcome.freed == 1
    with sessions() as session:
        schedule = session.get(Schedule, run.schedule_id)
        assert schedule is not None and schedule.server_gone_at == NOW


def test_a_finished_run_never_changes_state_again(sessions, settings, cloud) -> None:
    steps = Steps(sessions, settings, cloud)
    steps.attempt(NOW + dt.timedelta(hours=1))
    with transaction(sessions) as session:
        run = session.get(Run, steps.run_id)
        assert run is not None and run.state == RunState.DONE
        for state in RunState:
            with pytest.raises(IllegalTransition):
                move(run, state)


def test_one_poll_settles_the_runs_of_several_tenants(sessions, settings) -> None:
    """A poll batch spans tenants: one cloud call a tenant, and a tenant the cloud cannot
    answer for is polled again later while the others' runs end."""
    clock = {"now": NOW}
    cloud = SimulatedDriver(sessions, seconds_per_gb=0.01, clock=lambda: clock["now"])
    runs = {}
    for tenant in ("t1", "t2", "t3"):
        server = scheduled_server(sessions, cloud, tenant, NOW)
        with transaction(sessions) as session:
            runs[tenant] = request_run(session, tenant, server, NOW).id
    with transaction(sessions) as session:
        admit_waiting_runs(session, cap=10, now=NOW, lease_s=30, run_timeout_s=600)
    rt = Runtime(settings, sessions, cloud, clock=lambda: clock["now"])
    for run_id in runs.values():
        create_image(rt, run_id)
    clock["now"] = NOW + POLL_AFTER
    real_get_images = cloud.get_images

    def t2_unanswered(tenant_id, image_ids):  # type: ignore[no-untyped-def]
        if tenant_id == "t2":
            raise ComputeError("the image API answered 503")
        return real_get_images(tenant_id, image_ids)

    cloud.get_images = t2_unanswered
    outcome = poll_batch(rt, [(tenant, [run_id]) for tenant, run_id in runs.items()])
    with sessions() as session:
        states = {run.tenant_id: run for run in session.scalars(sa.select(Run))}
    assert {t: r.state for t, r in states.items()} == {
        "t1": RunState.DONE,
        "t2": RunState.SAVING,
        "t3": RunState.DONE,
    }
    assert states["t2"].next_poll_at == NOW + POLL_AFTER + dt.timedelta(
        seconds=settings.poll_interval_s
    )
    assert outcome.freed == 2
    assert sorted(t for t, _ in outcome.prune) == ["t1", "t3"]
