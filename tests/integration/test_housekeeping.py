"""The housekeeping task, apart from the tick: beat sends it, and it removes the schedules of
servers gone past their grace, trims history (runs, webhook events) past its days and
announces stale schedules."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from common.db import transaction
from common.models import EVENT_DELIVERED, Run, Schedule, WebhookEvent
from common.outbox import RUN_SUCCEEDED
from common.runs import RunState
from tests.support.scheduled import scheduled_server
from tests.support.waiting import NOW


def test_housekeeping_removes_gone_schedules_trims_history_and_announces_stale(
    sessions, settings, cloud, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from workers import tasks
    from workers.runtime import Runtime

    gone = scheduled_server(sessions, cloud, "t1", NOW - dt.timedelta(days=30))
    stale = scheduled_server(sessions, cloud, "t1", NOW - dt.timedelta(days=30))
    kept = scheduled_server(sessions, cloud, "t1", NOW)
    with transaction(sessions) as session:
        session.execute(
            sa.update(Schedule)
            .where(Schedule.server_id == gone)
            .values(server_gone_at=NOW - dt.timedelta(seconds=settings.server_gone_grace_s + 1))
        )
        session.add(
            Run(
                tenant_id="t1",
                server_id=kept,
                trigger="manual",
                period=NOW.date(),
                weekly=False,
                scheduled_for=NOW,
                state=RunState.DONE,
                created_at=NOW - dt.timedelta(days=settings.run_history_days + 2),
                not_before=NOW,
                start_by=NOW,
                finished_at=NOW - dt.timedelta(days=settings.run_history_days + 1),
            )
        )
        for age in (settings.run_history_days - 1, settings.run_history_days + 1):
            session.add(
                WebhookEvent(
                    id=uuid.uuid4(),
                    tenant_id="t1",
                    type=RUN_SUCCEEDED,
                    body="{}",
                    created_at=NOW - dt.timedelta(days=age),
                    state=EVENT_DELIVERED,
                    finished_at=NOW - dt.timedelta(days=age),
                )
            )
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW)
    monkeypatch.setattr(tasks, "runtime", lambda: rt)
    summary = tasks.housekeeping.run()
    assert summary["schedules_removed"] == 1 and summary["runs_trimmed"] == 1
    assert summary["went_stale"] == 1 and summary["webhook_events_trimmed"] == 1
    with sessions() as session:
        left = {s.server_id: s for s in session.scalars(sa.select(Schedule))}
        assert set(left) == {stale, kept}
        assert left[stale].stale_announced_at == NOW and left[kept].stale_announced_at is None
        assert session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)) == 1


def test_beat_sends_housekeeping_to_the_tick_pool(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from workers import celery_app, runtime

    # The app's schedule only: the workers' process-wide settings stay as they are.
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    app = celery_app.configure(settings, settings.broker_url)
    entry = app.conf.beat_schedule["housekeeping"]
    assert entry["task"] == "si.housekeeping" and entry["task"] in app.tasks
    assert entry["schedule"] == celery_app.HOUSEKEEPING_INTERVAL_S
    assert app.conf.task_routes["si.housekeeping"] == {"queue": celery_app.TICK_QUEUE}
