"""A run's life against PostgreSQL: the moves it may make and no other, the ends that set when
and why, a retry that waits again, and the one time-out."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from common import outbox
from common.db import transaction
from common.models import Run, WebhookEvent
from common.runs import (
    FINAL,
    IN_FLIGHT,
    OPEN,
    TIMED_OUT_ERROR,
    TRANSITIONS,
    IllegalTransition,
    Reason,
    RunState,
    deadline,
    end,
    end_matching,
    in_order,
    in_states,
    is_past_deadline,
    move,
    moving,
    sources,
    time_out,
    wait_again,
)
from tests.support.waiting import NOW, put_in, wait

S = RunState
#: The life of a run, as the design gives it: where each state may go.
LIFE = {
    S.PENDING: {S.ADMITTED, S.SKIPPED, S.CANCELLED},
    S.ADMITTED: {S.CREATING, S.TIMED_OUT},
    S.CREATING: {S.SAVING, S.PENDING, S.FAILED, S.CANCELLED, S.TIMED_OUT},
    S.SAVING: {S.DONE, S.PENDING, S.FAILED, S.TIMED_OUT},
    S.DONE: set(),
    S.FAILED: set(),
    S.TIMED_OUT: set(),
    S.SKIPPED: set(),
    S.CANCELLED: set(),
}


def runs_in_every_state(sessions) -> dict[RunState, int]:  # type: ignore[no-untyped-def]
    """One run in each state, each on a server of its own."""
    made = {}
    for minute, state in enumerate(RunState):
        made[state] = wait(sessions, "tenant-a", f"s-{state.value}", minute)
        put_in(sessions, [made[state]], state.value)
    return made


def saving_run(sessions) -> int:  # type: ignore[no-untyped-def]
    run_id = wait(sessions, "tenant-a", "s1", 0)
    put_in(sessions, [run_id], "saving")
    return run_id


def states_of(sessions) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return dict(session.execute(sa.select(Run.id, Run.state)).tuples().all())


def test_a_run_moves_only_as_its_life_allows_and_a_final_state_is_final() -> None:
    assert {state: set(targets) for state, targets in TRANSITIONS.items()} == LIFE
    assert {state for state, targets in LIFE.items() if not targets} == FINAL
    assert {S.ADMITTED, S.CREATING, S.SAVING} == IN_FLIGHT
    assert {S.PENDING} | IN_FLIGHT == OPEN
    assert sources(S.PENDING) == (S.CREATING, S.SAVING)
    assert sources(S.TIMED_OUT) == (S.ADMITTED, S.CREATING, S.SAVING)
    assert in_order(frozenset({S.SAVING, S.PENDING, S.DONE})) == (S.PENDING, S.SAVING, S.DONE)


@pytest.mark.parametrize("target", [s for s in RunState if s not in FINAL])
def test_moving_moves_only_the_runs_whose_state_may_reach_the_target(sessions, target) -> None:
    made = runs_in_every_state(sessions)
    with transaction(sessions) as session:
        session.execute(moving(target, Run.tenant_id == "tenant-a"))
    states = states_of(sessions)
    for state, run_id in made.items():
        expected = target if target in LIFE[state] else state
        assert states[run_id] == expected, (state, target)


def test_moving_narrowed_to_some_sources_moves_those_alone(sessions) -> None:
    made = runs_in_every_state(sessions)
    with transaction(sessions) as session:
        session.execute(moving(S.PENDING, Run.tenant_id == "tenant-a", only_from=[S.SAVING]))
    states = states_of(sessions)
    assert states[made[S.SAVING]] == "pending" and states[made[S.CREATING]] == "creating"
    with pytest.raises(IllegalTransition, match="-> pending"):
        moving(S.PENDING, only_from=[S.ADMITTED])


@pytest.mark.parametrize("target", sorted(FINAL))
def test_a_final_state_is_reached_only_through_an_end(sessions, target) -> None:
    run_id = saving_run(sessions)
    with pytest.raises(IllegalTransition, match="final"):
        moving(target, Run.id == run_id)
    with sessions() as session, pytest.raises(IllegalTransition, match="final"):
        move(session.get(Run, run_id), target)


def test_move_refuses_what_the_life_does_not_allow(sessions) -> None:
    run_id = wait(sessions, "tenant-a", "s1", 0)
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        with pytest.raises(IllegalTransition, match="pending -> saving"):
            move(run, S.SAVING)
        move(run, S.ADMITTED)
    assert states_of(sessions) == {run_id: "admitted"}


def test_an_end_sets_when_and_why_and_frees_the_lease(sessions) -> None:
    run_id = saving_run(sessions)
    later = NOW + dt.timedelta(minutes=3)
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        run.lease_until = later
        end(run, S.FAILED, later, Reason.IMAGE_ERROR, "image ERROR")
    with sessions() as session:
        run = session.get(Run, run_id)
        assert (run.state, run.finished_at, run.lease_until) == ("failed", later, None)
        assert (run.reason, run.error) == ("image_error", "image ERROR")
        with pytest.raises(IllegalTransition):
            end(run, S.DONE, later, None, None)


def test_an_end_without_a_reason_keeps_what_the_run_said(sessions) -> None:
    run_id = saving_run(sessions)
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        run.reason, run.error = "busy", "busy once"
        end(run, S.DONE, NOW, None, None)
    with sessions() as session:
        run = session.get(Run, run_id)
        assert (run.state, run.reason, run.error) == ("done", "busy", "busy once")


def test_a_run_ends_only_inside_a_session() -> None:
    with pytest.raises(RuntimeError, match="outside a session"):
        end(Run(id=1, state="saving"), S.DONE, NOW, None, None)


def test_end_matching_ends_the_matching_runs_it_may_and_returns_them(sessions) -> None:
    made = runs_in_every_state(sessions)
    with transaction(sessions) as session:
        session.execute(sa.update(Run).values(lease_until=NOW))
        ended = end_matching(
            session, S.CANCELLED, NOW, Reason.SERVER_GONE, "gone", Run.tenant_id == "tenant-a"
        )
    assert sorted(row.id for row in ended) == sorted(made[s] for s in (S.PENDING, S.CREATING))
    with sessions() as session:
        cancelled = session.scalars(sa.select(Run).where(Run.state == "cancelled")).all()
    assert {(r.id, r.reason, r.error, r.finished_at, r.lease_until) for r in cancelled} == {
        (made[S.PENDING], "server_gone", "gone", NOW, None),
        (made[S.CREATING], "server_gone", "gone", NOW, None),
        (made[S.CANCELLED], None, None, None, NOW),  # already ended: untouched
    }


def test_a_retry_waits_again_with_nothing_of_its_attempt(sessions) -> None:
    run_id = saving_run(sessions)
    later = NOW + dt.timedelta(minutes=7)
    with transaction(sessions) as session:
        run = session.get(Run, run_id)
        run.image_id, run.lease_until = "image-1", NOW
        wait_again(run, later, Reason.IMAGE_ERROR, "image ERROR")
    with sessions() as session:
        run = session.get(Run, run_id)
        assert (run.state, run.not_before, run.image_id, run.lease_until) == (
            "pending",
            later,
            None,
            None,
        )
        assert (run.attempt_stamp, run.reason, run.error) == (None, "image_error", "image ERROR")


def test_only_runs_in_flight_past_their_deadline_time_out(sessions) -> None:
    made = runs_in_every_state(sessions)
    past, on_time = made[S.SAVING], made[S.CREATING]
    with transaction(sessions) as session:
        session.execute(sa.update(Run).values(deadline_at=NOW - dt.timedelta(seconds=1)))
        session.execute(sa.update(Run).where(Run.id == on_time).values(deadline_at=NOW))
        session.execute(sa.update(Run).where(Run.id == past).values(error="slow"))
        timed_out = time_out(session, NOW)
    assert sorted(timed_out) == sorted([("tenant-a", "s-saving"), ("tenant-a", "s-admitted")])
    with sessions() as session:
        run = session.get(Run, past)
    assert (run.state, run.reason, run.finished_at) == ("timed_out", "timeout", NOW)
    assert run.error == f"slow; {TIMED_OUT_ERROR}"
    assert states_of(sessions)[on_time] == "creating"
    assert deadline(NOW, 90) == NOW + dt.timedelta(seconds=90)


def test_a_loaded_run_is_past_its_deadline_as_the_statement_says() -> None:
    """A poll judges the run it holds in Python before it asks for the time-out statement:
    the same rule, the deadline itself not yet past, no deadline never past."""
    second = dt.timedelta(seconds=1)
    assert is_past_deadline(Run(deadline_at=NOW - second), NOW)
    assert not is_past_deadline(Run(deadline_at=NOW), NOW)
    assert not is_past_deadline(Run(deadline_at=None), NOW)


def test_in_states_selects_exactly_those_states(sessions) -> None:
    made = runs_in_every_state(sessions)
    with sessions() as session:
        found = set(session.scalars(sa.select(Run.id).where(in_states(OPEN))))
    assert found == {made[s] for s in OPEN}


def test_moves_and_ends_reach_only_the_runs_matching_the_callers_conditions(sessions) -> None:
    mine, other = saving_run(sessions), wait(sessions, "tenant-b", "s2", 1)
    put_in(sessions, [other], "saving")
    theirs, creating = wait(sessions, "tenant-b", "s3", 2), wait(sessions, "tenant-b", "s4", 3)
    put_in(sessions, [creating], "creating")
    with transaction(sessions) as session:
        session.execute(sa.update(Run).values(deadline_at=NOW - dt.timedelta(seconds=1)))
        session.execute(moving(S.PENDING, Run.id == mine))
        assert time_out(session, NOW, Run.id == other) == [("tenant-b", "s2")]
        only_pending = end_matching(
            session, S.CANCELLED, NOW, Reason.SERVER_GONE, "gone", only_from=(S.PENDING,)
        )
    assert sorted(row.id for row in only_pending) == sorted([mine, theirs])
    with sessions() as session:
        run = session.get(Run, other)
    # A run that had no error says only why it timed out.
    assert (run.state, run.error) == ("timed_out", TIMED_OUT_ERROR)
    assert states_of(sessions)[creating] == "creating"  # past its deadline, but not asked for


def test_every_end_is_announced_to_a_hooked_tenant_as_of_its_time(sessions) -> None:
    with transaction(sessions) as session:
        outbox.put_webhook(session, "tenant-a", "https://hooks.example.com/", "s" * 16, NOW)
    one, many = saving_run(sessions), wait(sessions, "tenant-a", "s2", 1)
    later = NOW + dt.timedelta(minutes=9)
    with transaction(sessions) as session:
        end(session.get(Run, one), S.DONE, later, None, None)
        end_matching(session, S.SKIPPED, later, Reason.MISSED_WINDOW, "late", Run.id == many)
    with sessions() as session:
        events = session.scalars(sa.select(WebhookEvent)).all()
    assert sorted(e.type for e in events) == ["run.failed", "run.succeeded"]
    assert {(e.created_at, e.next_attempt_at) for e in events} == {(later, later)}
