"""The database-derived gauges of /metrics, on real PostgreSQL."""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry, generate_latest

from common import schedules
from common.db import transaction
from common.models import Run
from common.runtime_settings import set_inflight_cap
from scheduler import rebalances
from workers.metrics import ServiceCollector

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def _run(
    server: str,
    state: str,
    error: str | None = None,
    waited_s: float = 0,
    reason: str | None = None,
) -> Run:
    at = NOW - dt.timedelta(seconds=waited_s)
    return Run(
        tenant_id="t",
        server_id=server,
        trigger="manual",
        period=at.date(),
        weekly=False,
        scheduled_for=at,
        state=state,
        attempts=1,
        error=error,
        reason=reason,
        created_at=at,
        not_before=at,
        start_by=at + dt.timedelta(days=1),
    )


def test_collector_reads_runs_cap_waits_failures_planned_peak_and_jobs(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        for index in range(3):
            schedules.upsert(
                session,
                tenant_id="t",
                server_id=f"s{index}",
                server_name=f"s{index}",
                retention=2,
                day_of_week=None,
                slot_s=3600,  # all three at 01:00: the plan's peak is 3
                default_duration_s=600,
                now=NOW,
            )
        session.add_all(
            [
                _run("a", "pending", waited_s=90),
                _run("b", "pending", waited_s=30),
                _run("c", "saving"),
                _run("d", "done"),
                _run("e", "failed", "create failed: 500 (attempt 3 of 3)", reason="create_error"),
                _run("f", "timed_out", "timed out: the image did not finish", reason="timeout"),
                _run("h", "cancelled", "cancelled by an operator"),  # no code: ended by hand
            ]
        )
        set_inflight_cap(session, 7)
        rebalances.request_rebalance(session, NOW, 60)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(sessions, default_cap=50, cache_s=60, clock=lambda: NOW))
    text = generate_latest(registry).decode()
    assert 'si_runs{state="pending"} 2.0' in text
    assert "si_in_flight 1.0" in text
    assert "si_inflight_cap 7.0" in text
    assert "si_oldest_waiting_run_age_seconds 90.0" in text
    assert 'si_runs_failed{reason="create_error",state="failed"} 1.0' in text
    assert 'si_runs_failed{reason="timeout",state="timed_out"} 1.0' in text
    assert 'si_runs_failed{reason="other",state="cancelled"} 1.0' in text
    assert "si_planned_peak_in_flight 3.0" in text
    assert 'si_rebalances{state="queued"} 1.0' in text
    assert 'si_rebalances{state="failed"} 0.0' in text
    assert "si_metrics_database_up 1.0" in text
    # Cached: a new run is not seen until the cache expires.
    with transaction(sessions) as session:
        session.add(_run("g", "pending"))
    assert 'si_runs{state="pending"} 2.0' in generate_latest(registry).decode()


def test_collector_counts_stale_schedules_as_api_md_defines_them(sessions) -> None:  # type: ignore[no-untyped-def]
    """Daily, a day old: stale without a success, or with one 37 h ago; fresh with one 35 h
    ago; weekly with one 3 days ago fresh; paused never stale; a day-young one not yet."""
    day = dt.timedelta(days=1)
    cases = {
        "never": (None, None, 2 * day, False),
        "late": (None, NOW - dt.timedelta(hours=37), 2 * day, False),
        "recent": (None, NOW - dt.timedelta(hours=35), 2 * day, False),
        "weekly": (4, NOW - 3 * day, 10 * day, False),
        "paused": (None, None, 2 * day, True),
        "young": (None, None, day - dt.timedelta(seconds=1), False),
    }
    with transaction(sessions) as session:
        for server, (day_of_week, success, age, paused) in cases.items():
            row = schedules.upsert(
                session,
                tenant_id="t",
                server_id=server,
                server_name=server,
                retention=2,
                day_of_week=day_of_week,
                slot_s=3600 if day_of_week is None else day_of_week * 86400 + 3600,
                default_duration_s=600,
                now=NOW - age,
            )
            row.last_success_at = success
            row.paused_at = NOW if paused else None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(sessions, default_cap=50, cache_s=0, clock=lambda: NOW))
    text = generate_latest(registry).decode()
    assert "si_schedules 6.0" in text
    assert "si_schedules_stale 2.0" in text  # "never" and "late"
