"""Admission's rules against PostgreSQL, one a test: every state in flight holds its server and
its place, the last free place is used, back-off ends on time, a tenant's oldest run goes
first, and an admitted run carries its lease and its one deadline."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from common.db import transaction
from common.models import Run
from scheduler.admission import (
    InFlight,
    admit_waiting_runs,
    in_flight,
    in_flight_count,
    waiting_candidates,
)
from tests.support.waiting import NOW, admit, put_in, wait


def run_of(sessions, run_id: int) -> Run:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.get(Run, run_id)


#: A run holds its place and its server from its admission until it ends.
IN_FLIGHT_STATES = ["admitted", "creating", "saving"]


@pytest.mark.parametrize("state", IN_FLIGHT_STATES)
def test_a_server_with_an_image_in_flight_is_never_admitted_again(sessions, state) -> None:
    first = wait(sessions, "tenant-a", "s1", 0)
    put_in(sessions, [first], state)
    wait(sessions, "tenant-a", "s1", 1)
    other = wait(sessions, "tenant-b", "s2", 2)
    assert admit(sessions, cap=10) == [other]
    assert admit(sessions, cap=10) == []


@pytest.mark.parametrize("state", IN_FLIGHT_STATES)
def test_every_state_in_flight_holds_a_place_under_the_cap(sessions, state) -> None:
    held = wait(sessions, "tenant-a", "s1", 0)
    put_in(sessions, [held], state)
    wait(sessions, "tenant-b", "s2", 1)
    assert admit(sessions, cap=1) == []
    with sessions() as session:
        taken, count = in_flight(session), in_flight_count(session)
    assert (taken.total, dict(taken.held), set(taken.busy_servers)) == (1, {"tenant-a": 1}, {"s1"})
    assert count == 1


def test_the_last_free_place_is_used_and_no_more(sessions) -> None:
    running = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(2)]
    put_in(sessions, running, "saving")
    waiting = [wait(sessions, "tenant-b", f"b{i}", 10 + i) for i in range(3)]
    assert admit(sessions, cap=3) == [waiting[0]]
    assert admit(sessions, cap=3) == []


def test_a_full_cap_admits_an_empty_list(sessions) -> None:
    put_in(sessions, [wait(sessions, "tenant-a", "a0", 0)], "creating")
    wait(sessions, "tenant-b", "b0", 1)
    assert admit(sessions, cap=1) == []
    assert admit(sessions, cap=0) == []


def test_back_off_ends_at_not_before_itself(sessions) -> None:
    later = NOW + dt.timedelta(minutes=10)
    run = wait(sessions, "tenant-a", "a0", 0, not_before=later)
    assert admit(sessions, cap=5, now=later - dt.timedelta(microseconds=1)) == []
    assert admit(sessions, cap=5, now=later) == [run]


def test_a_tenants_oldest_run_goes_first_whatever_the_order_it_was_made_in(sessions) -> None:
    # Made newest first: the ids run against the times, so only the time can order them.
    runs = {minute: wait(sessions, "tenant-a", f"a{minute}", minute) for minute in (30, 20, 10)}
    assert admit(sessions, cap=1) == [runs[10]]
    assert admit(sessions, cap=2) == [runs[20]]


def test_runs_due_at_the_same_time_go_in_the_order_they_were_made(sessions) -> None:
    first, second = (wait(sessions, "tenant-a", f"a{i}", 5) for i in range(2))
    assert admit(sessions, cap=1) == [first]
    assert admit(sessions, cap=2) == [second]


def test_only_a_servers_oldest_waiting_run_competes(sessions) -> None:
    """A server's younger run is no candidate of its own: the place goes to the next server."""
    runs = [wait(sessions, "tenant-a", "s1", 0), wait(sessions, "tenant-a", "s1", 1)]
    other = wait(sessions, "tenant-a", "s2", 2)
    assert sorted(admit(sessions, cap=2)) == sorted([runs[0], other])


def test_an_admitted_run_holds_a_lease_and_its_first_deadline(sessions) -> None:
    run = wait(sessions, "tenant-a", "a0", 0)
    assert admit(sessions, cap=1) == [run]
    admitted = run_of(sessions, run)
    assert admitted.state == "admitted"
    assert admitted.admitted_at == NOW
    assert admitted.lease_until == NOW + dt.timedelta(seconds=60)
    assert admitted.deadline_at == NOW + dt.timedelta(seconds=3600)
    # A retry waits again; admitted later, it keeps the deadline of its first admission.
    with transaction(sessions) as session:
        session.execute(sa.update(Run).where(Run.id == run).values(state="pending"))
    later = NOW + dt.timedelta(minutes=5)
    assert admit(sessions, cap=1, now=later) == [run]
    again = run_of(sessions, run)
    assert (again.admitted_at, again.deadline_at) == (later, NOW + dt.timedelta(seconds=3600))


def test_the_candidates_query_takes_turns_across_tenants_within_the_places(sessions) -> None:
    """Tenant A with three runs due 01:00 to 01:02, tenant B with one due 01:05, two places:
    A's first and B's, in that order."""
    a = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(3)]
    b = wait(sessions, "tenant-b", "b0", 5)
    assert admit(sessions, cap=2) == [a[0], b]


def test_with_no_ceiling_given_a_tenant_may_take_every_place(sessions) -> None:
    runs = [wait(sessions, "tenant-a", f"a{i}", i) for i in range(3)]
    with sessions() as session:
        candidates = waiting_candidates(session, NOW, 3, InFlight.of([]))
    assert [c.run_id for c in candidates] == runs
    with transaction(sessions) as session:
        assert admit_waiting_runs(session, 3, NOW, 60, 3600) == runs
