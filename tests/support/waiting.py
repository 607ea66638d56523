"""Runs waiting for a place, made straight in the database, and admission over them."""

from __future__ import annotations

import datetime as dt
import itertools

import sqlalchemy as sa

from common.db import transaction
from common.models import Run
from common.runs import NewRun, make_runs
from scheduler.admission import admit_waiting_runs

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # a Wednesday
ONE_AM = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
# Scheduled runs of one server need periods of their own (one run per server and period; one
# open run-now per server): each waiting run gets the next.
_PERIODS = itertools.count()


def wait(sessions, tenant: str, server: str, minute: int, not_before: dt.datetime = NOW) -> int:  # type: ignore[no-untyped-def]
    """A run waiting since ONE_AM + `minute`, on `server`."""
    at = ONE_AM + dt.timedelta(minutes=minute)
    period = dt.date(2000, 1, 1) + dt.timedelta(days=next(_PERIODS))
    new = NewRun(
        None, tenant, server, "schedule", period, False, at, not_before, NOW.replace(hour=23)
    )
    with transaction(sessions) as session:
        [run_id] = make_runs(session, [new], at)
    return run_id


def admit(sessions, cap: int, tenant_max: int = 0, now: dt.datetime = NOW) -> list[int]:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        return admit_waiting_runs(session, cap, now, 60, 3600, tenant_max=tenant_max)


def finish(sessions, run_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.execute(
            sa.update(Run).where(Run.id.in_(run_ids)).values(state="done", finished_at=NOW)
        )


def put_in(sessions, run_ids: list[int], state: str) -> None:  # type: ignore[no-untyped-def]
    """Runs moved straight to `state`, as the steps would leave them."""
    with transaction(sessions) as session:
        session.execute(sa.update(Run).where(Run.id.in_(run_ids)).values(state=state))
