"""The tick and admission against PostgreSQL: unique runs, collapsed periods, the cap under
concurrent admitters, fair shares across ticks, leases."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter

import sqlalchemy as sa

from common import schedules
from common.db import transaction
from common.models import Run, Schedule
from common.runs import IN_FLIGHT, request_run
from scheduler import tick
from scheduler.admission import admit_waiting_runs, in_flight_count
from tests.support.waiting import NOW, admit, finish, wait


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
    # Fair shares: the five places among four tenants, none twice before all had one.
    tenants = Counter(r.tenant_id for r in all_runs(sessions) if r.state in IN_FLIGHT)
    assert sorted(tenants.values()) == [1, 1, 1, 2]


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


def test_a_published_poll_is_published_again_only_after_its_lease(sessions) -> None:
    enable(sessions, "s1", next_run=NOW - dt.timedelta(minutes=1))
    with transaction(sessions) as session:
        tick.materialize_due_runs(session, NOW)
        admit_waiting_runs(session, 10, NOW, 60, 3600)
        session.execute(sa.update(Run).values(state="saving", next_poll_at=NOW))

    def polls(at: dt.datetime) -> list[tuple[str, int]]:
        with transaction(sessions) as session:
            return tick.due_polls(session, at, 1, lease_s=60)

    [(tenant, run_id)] = polls(NOW)
    # A poll waiting in a long queue is not sent again at every tick behind it.
    for seconds in (2, 30, 59):
        assert polls(NOW + dt.timedelta(seconds=seconds)) == []
    # A poll lost with its message comes again once the lease runs out.
    assert polls(NOW + dt.timedelta(seconds=61)) == [(tenant, run_id)]


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


# -- fair shares across ticks ---------------------------------------------------------------


def test_two_places_go_to_the_oldest_of_one_tenant_and_the_other_tenants_run(sessions) -> None:
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(3)]  # due 01:00, 01:01, 01:02
    b = wait(sessions, "tenant-b", "b0", 5)  # due 01:05
    assert sorted(admit(sessions, cap=2)) == sorted([a[0], b])


def test_places_freed_one_at_a_time_still_go_to_the_tenant_holding_fewest(sessions) -> None:
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(3)]
    b = wait(sessions, "tenant-b", "b0", 5)
    assert admit(sessions, cap=1) == [a[0]]
    # A holds one place, B none: B's younger run gets the second place, not A's next.
    assert admit(sessions, cap=2) == [b]


def test_a_tenant_holding_three_places_waits_while_another_holds_none(sessions) -> None:
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(6)]
    assert sorted(admit(sessions, cap=3)) == a[:3]
    b = wait(sessions, "tenant-b", "b0", 30)  # younger than every waiting run of A
    finish(sessions, [a[1]])
    assert admit(sessions, cap=3) == [b]
    finish(sessions, [a[0]])
    assert admit(sessions, cap=3) == [a[3]]


def test_the_per_tenant_ceiling_holds_and_leaves_places_to_others(sessions) -> None:
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(5)]
    b = wait(sessions, "tenant-b", "b0", 9)
    assert sorted(admit(sessions, cap=10, tenant_max=2)) == sorted([a[0], a[1], b])
    assert admit(sessions, cap=10, tenant_max=2) == []
    assert admit(sessions, cap=10, tenant_max=3) == [a[2]]


def test_back_off_is_honoured_and_the_place_goes_to_the_next_tenant(sessions) -> None:
    later = NOW + dt.timedelta(minutes=10)
    wait(sessions, "tenant-a", "a0", 0, not_before=later)
    b = wait(sessions, "tenant-b", "b0", 5)
    assert admit(sessions, cap=1) == [b]
    assert admit(sessions, cap=5) == []


def test_a_run_past_its_window_is_never_admitted_though_not_yet_skipped(sessions) -> None:
    """The sweep that skips it may come a little after its window ends: till then the run
    waits, and the place goes to a run still in its window, on the same server too."""
    late = wait(sessions, "tenant-a", "a0", 0)  # its window ends at 23:00
    after_its_window = NOW.replace(hour=23, minute=30)
    fresh = wait(sessions, "tenant-a", "a0", 5)
    with transaction(sessions) as session:
        session.execute(
            sa.update(Run)
            .where(Run.id == fresh)
            .values(start_by=after_its_window + dt.timedelta(hours=1))
        )
    assert admit(sessions, cap=5, now=after_its_window) == [fresh]
    assert {r.id: r.state for r in all_runs(sessions)} == {late: "pending", fresh: "admitted"}


def test_the_query_hands_the_decision_what_the_whole_queue_would(sessions) -> None:
    """Round after round, with servers busy, runs sharing a server, back-off and a ceiling,
    what is admitted is what `pick_runs` picks from every waiting run."""
    from scheduler.admission import Candidate, in_flight, pick_runs

    rnd = random.Random(15)
    for _ in range(300):
        tenant = f"t{rnd.randrange(6)}"
        backed_off = NOW + dt.timedelta(minutes=5) if rnd.random() < 0.1 else NOW
        wait(sessions, tenant, f"{tenant}-s{rnd.randrange(40)}", rnd.randrange(60), backed_off)
    for _ in range(12):
        cap, ceiling = rnd.randint(5, 25), rnd.choice([0, 0, 3, 6])
        with sessions() as session:
            taken = in_flight(session)
            rows = session.execute(
                sa.select(Run.id, Run.tenant_id, Run.server_id, Run.scheduled_for).where(
                    Run.state == "pending", Run.not_before <= NOW
                )
            )
            whole_queue = [Candidate(*row) for row in rows]
        expected = pick_runs(
            whole_queue, cap - taken.total, taken.held, taken.busy_servers, ceiling
        )
        assert admit(sessions, cap, tenant_max=ceiling) == expected
        in_flight_now = [r.id for r in all_runs(sessions) if r.state in IN_FLIGHT]
        finish(sessions, rnd.sample(in_flight_now, len(in_flight_now) // 2))


def test_workers_admit_under_the_ceiling_an_operator_set(sessions, settings, cloud, monkeypatch):  # type: ignore[no-untyped-def]
    from common.runtime_settings import set_tenant_inflight_max
    from workers import tasks
    from workers.runtime import Runtime

    published: list[int] = []
    monkeypatch.setattr(tasks, "publish_creates", published.extend)
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(4)]
    with transaction(sessions) as session:
        set_tenant_inflight_max(session, 2)
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW)
    assert tasks.admit_and_publish(rt) == a[:2] == published


def test_workers_read_the_cap_and_the_ceiling_an_operator_set(
    sessions, settings, cloud, monkeypatch
):  # type: ignore[no-untyped-def]
    from common.runtime_settings import set_inflight_cap, set_tenant_inflight_max
    from workers import tasks
    from workers.runtime import Runtime

    monkeypatch.setattr(tasks, "publish_creates", lambda _: None)
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(4)]
    b = [wait(sessions, "tenant-b", f"b{i}", 10 + i) for i in range(4)]
    with transaction(sessions) as session:
        set_inflight_cap(session, 3)
        set_tenant_inflight_max(session, 2)
    rt = Runtime(settings, sessions, cloud, clock=lambda: NOW)
    assert sorted(tasks.admit_and_publish(rt)) == sorted(a[:2] + b[:1])


def test_the_tick_makes_runs_in_batches_and_stops_at_a_short_one(  # type: ignore[no-untyped-def]
    sessions, engine, settings, cloud, monkeypatch
) -> None:
    from workers import tasks
    from workers.runtime import Runtime

    for index in range(5):
        enable(sessions, f"s{index}", next_run=NOW - dt.timedelta(minutes=1))
    monkeypatch.setattr(tasks, "publish_creates", lambda _: None)
    monkeypatch.setattr(tasks, "runtime", lambda: Runtime(settings, sessions, cloud, lambda: NOW))
    monkeypatch.setattr(tick, "MATERIALIZE_BATCH", 2)
    looks: list[str] = []

    def count_looks(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        if "FROM schedules" in statement and "SKIP LOCKED" in statement:
            looks.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count_looks)
    try:
        assert tasks.tick.run()["runs_made"] == 5
        # Two full batches and a short one, after which the due schedules are not read again.
        assert len(looks) == 3
    finally:
        sa.event.remove(engine, "before_cursor_execute", count_looks)
    assert len(all_runs(sessions)) == 5
