"""The tick and admission against PostgreSQL: unique runs, collapsed periods, the cap under
concurrent admitters, leases."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from common import schedules
from common.db import transaction
from common.models import Run, Schedule
from common.runs import IN_FLIGHT, request_run
from scheduler import tick
from scheduler.admission import admit_waiting_runs, in_flight_count

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # a Wednesday


def enable(
    sessions,
    server: str,
    tenant: str = "t1",
    day: int | None = None,
    slot: int = 3600,
    next_run: dt.datetime | None = None,
) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        row = schedules.upsert(
            session,
            tenant_id=tenant,
            server_id=server,
            server_name=server,
            retention=2,
            day_of_week=day,
            slot_s=slot,
            default_duration_s=60,
            now=NOW - dt.timedelta(days=1),
        )
        if next_run is not None:
            row.next_run_at = next_run


def all_runs(sessions) -> list[Run]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return list(session.scalars(sa.select(Run).order_by(Run.id)))


def test_due_schedules_become_one_run_each_and_move_on(sessions) -> None:
    for index in range(5):
        enable(sessions, f"s{index}", next_run=NOW - dt.timedelta(minutes=1))
    enable(sessions, "later", next_run=NOW + dt.timedelta(hours=1))
    with transaction(sessions) as session:
        assert tick.materialize_due_runs(session, NOW) == 5
    with transaction(sessions) as session:
        assert tick.materialize_due_runs(session, NOW) == 0
    runs = all_runs(sessions)
    assert sorted(r.server_id for r in runs) == [f"s{i}" for i in range(5)]
    assert all(r.state == "pending" and r.period == dt.date(2026, 11, 25) for r in runs)
    with sessions() as session:
        nexts = session.scalars(
            sa.select(Schedule.next_run_at).where(Schedule.server_id != "later")
        )
        assert set(nexts) == {dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.UTC)}


def test_a_second_tick_for_the_same_period_inserts_nothing(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
    # As if another beat had read the schedule before the first moved it on.
    with transaction(sessions) as session:
        session.execute(sa.update(Schedule).values(next_run_at=NOW - dt.timedelta(minutes=1)))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW + dt.timedelta(seconds=5))
    assert len(all_runs(sessions)) == 1


def test_missed_periods_collapse_into_one_run(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(days=3))
    enable(sessions, "w1", day=0, slot=3600, next_run=NOW - dt.timedelta(days=16))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
    runs = {r.server_id: r for r in all_runs(sessions)}
    assert len(runs) == 2
    assert runs["s1"].scheduled_for == dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
    assert runs["w1"].scheduled_for == dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
    assert runs["w1"].period == dt.date(2026, 11, 23)
    assert runs["w1"].start_by > NOW  # a collapsed run still gets its chance


def test_schedules_of_vanished_servers_make_no_runs_and_go_after_grace(sessions) -> None:
    enable(sessions, "gone", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        session.execute(sa.update(Schedule).values(server_gone_at=NOW - dt.timedelta(days=2)))
    with transaction(sessions) as session:
        assert tick.materialize_due_runs(session, NOW) == 0
        assert tick.remove_gone_schedules(session, NOW, grace_s=3 * 86400) == 0
        assert tick.remove_gone_schedules(session, NOW, grace_s=86400) == 1


def test_concurrent_admitters_never_exceed_the_cap(sessions) -> None:
    for index in range(40):
        enable(
            sessions, f"s{index}", tenant=f"t{index % 4}", next_run=NOW - dt.timedelta(minutes=1)
        )
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
    barrier = threading.Barrier(6)
    admitted: list[int] = []

    def admit() -> None:
        barrier.wait()
        with transaction(sessions) as session:
            admitted.extend(admit_waiting_runs(session, 5, NOW, 60, 3600))

    threads = [threading.Thread(target=admit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 5
    with sessions() as session:
        assert in_flight_count(session) == 5
    # In turns: the first five come from four tenants, none twice before all had one.
    tenants = [r.tenant_id for r in all_runs(sessions) if r.state in IN_FLIGHT]
    assert set(tenants) == {"t0", "t1", "t2", "t3"}


def test_a_server_never_gets_two_runs_in_flight(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
        request_run(session, "t1", "s1", NOW)
    with transaction(sessions) as session:
        assert len(admit_waiting_runs(session, 10, NOW, 60, 3600)) == 1
    with transaction(sessions) as session:
        assert admit_waiting_runs(session, 10, NOW, 60, 3600) == []


def test_lost_creates_and_due_polls_are_published_again(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    enable(sessions, "s2", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
        admit_waiting_runs(session, 10, NOW, 60, 3600)
        session.execute(sa.update(Run).where(Run.server_id == "s2").values(state="saving"))

    def take(at: dt.datetime) -> tuple[list[int], list[tuple[str, int]]]:
        with transaction(sessions) as session:
            return tick.lost_creates(session, at, 60), tick.due_polls(session, at, 10)

    assert take(NOW + dt.timedelta(seconds=30)) == ([], [])
    late = take(NOW + dt.timedelta(seconds=61))
    runs = {r.server_id: r for r in all_runs(sessions)}
    assert late == ([runs["s1"].id], [("t1", runs["s2"].id)])
    # Taken leases are renewed: the next tick does not publish them again at once.
    assert take(NOW + dt.timedelta(seconds=62)) == ([], [])


def test_runs_past_their_period_are_skipped_with_a_reason(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
        assert tick.skip_missed_runs(session, NOW + dt.timedelta(hours=2)) == 0
        assert tick.skip_missed_runs(session, NOW + dt.timedelta(days=2)) == 1
    [run] = all_runs(sessions)
    assert run.state == "skipped"
    assert "period has passed" in run.error


def test_finished_runs_are_trimmed_after_the_history_days(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    enable(sessions, "s2", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
        session.execute(
            sa.update(Run)
            .where(Run.server_id == "s1")
            .values(state="done", finished_at=NOW - dt.timedelta(days=31))
        )
    with transaction(sessions) as session:
        assert tick.trim_history(session, NOW, keep_days=30) == 1
    # A pending run is never trimmed, however old.
    assert [r.server_id for r in all_runs(sessions)] == ["s2"]
