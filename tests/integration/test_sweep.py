"""The sweep, apart from the tick: beat sends it at most once a second however fast the tick,
and it ends runs past their deadline or window and publishes again the creates whose lease
ran out; the tick itself only makes, admits and polls."""

from __future__ import annotations

import datetime as dt

import pytest

from common.models import Run
from common.runs import RunState
from tests.support.waiting import NOW, admit, put_in, wait


@pytest.fixture
def swept(sessions, settings, cloud, monkeypatch):  # type: ignore[no-untyped-def]
    """Run a task at a given time; what it publishes is kept by kind instead of sent."""
    from workers import tasks
    from workers.runtime import Runtime

    published: dict[str, list] = {"creates": [], "prunes": [], "polls": []}
    monkeypatch.setattr(tasks, "publish_creates", published["creates"].extend)
    monkeypatch.setattr(tasks, "publish_prunes", published["prunes"].extend)
    monkeypatch.setattr(tasks, "publish_polls", published["polls"].extend)

    def run(task, at: dt.datetime) -> dict:  # type: ignore[no-untyped-def]
        monkeypatch.setattr(
            tasks, "runtime", lambda: Runtime(settings, sessions, cloud, clock=lambda: at)
        )
        return task.run()

    run.published = published  # type: ignore[attr-defined]
    return run


def test_the_sweep_ends_late_runs_and_publishes_lost_creates_again(sessions, swept) -> None:  # type: ignore[no-untyped-def]
    from workers import tasks

    stuck, lost = wait(sessions, "t1", "s-stuck", 1), wait(sessions, "t1", "s-lost", 2)
    assert sorted(admit(sessions, cap=2)) == [stuck, lost]
    put_in(sessions, [stuck], RunState.SAVING)
    put_in(sessions, [lost], RunState.CREATING)
    # Its schedule gone (disabled), and backed off: it can only be cancelled.
    orphan = wait(sessions, "t1", "s-orphan", 3, not_before=NOW.replace(hour=22))
    # Past the 60-s lease `admit` gave.
    leased_out = NOW + dt.timedelta(minutes=10)
    # The tick neither ends runs nor looks at leases: it sends the image in progress its poll.
    assert swept(tasks.tick, leased_out) == {"runs_made": 0, "admitted": 0, "polls": 1}
    assert swept.published == {"creates": [], "prunes": [], "polls": [("t1", stuck)]}
    summary = swept(tasks.sweep, leased_out)
    assert summary == {"timed_out": 0, "republished": 1, "rebalances_republished": 0}
    assert swept.published["creates"] == [lost]
    with sessions() as session:
        assert session.get(Run, orphan).state == RunState.CANCELLED  # type: ignore[union-attr]
    # Its lease renewed, the lost create is not published again at once.
    swept(tasks.sweep, leased_out + dt.timedelta(seconds=10))
    assert swept.published["creates"] == [lost]
    # Past the runs' one-hour time-out.
    late = NOW.replace(hour=23, minute=30)
    assert swept(tasks.tick, late)["admitted"] == 0
    assert swept(tasks.sweep, late)["timed_out"] == 2
    assert sorted(swept.published["prunes"]) == [("t1", "s-lost"), ("t1", "s-stuck")]
    with sessions() as session:
        states = {run.id: (run.state, run.reason) for run in session.query(Run)}
    assert states == {
        orphan: (RunState.CANCELLED, "cancelled"),
        stuck: (RunState.TIMED_OUT, "timeout"),
        lost: (RunState.TIMED_OUT, "timeout"),
    }


def test_beat_sends_the_sweep_and_webhooks_at_most_once_a_second(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from workers import celery_app, runtime

    # The app's schedule only: the workers' process-wide settings stay as they are.
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    for tick_s, slow_s in ((0.2, 1.0), (5.0, 5.0)):
        app = celery_app.configure(settings.replace(tick_interval_s=tick_s), settings.broker_url)
        schedule = app.conf.beat_schedule
        assert schedule["tick"]["schedule"] == tick_s
        assert schedule["sweep"]["schedule"] == schedule["deliver-webhooks"]["schedule"] == slow_s
        assert schedule["sweep"]["task"] == "si.sweep" and "si.sweep" in app.tasks
    assert app.conf.task_routes["si.sweep"] == {"queue": celery_app.TICK_QUEUE}
