"""Admission under the cap: which waiting runs may start now.

The decision is `pick_runs`, a plain function; `admit_waiting_runs` feeds it from the
database under one advisory lock, so that however many ticks and workers admit at once,
the runs in flight never exceed the cap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from common.models import Run
from common.runs import IN_FLIGHT, RunState, deadline, in_states, moving

# Any constant shared by every process; it names the admission critical section.
ADMISSION_LOCK = 0x5C4ED1A6


class Candidate(NamedTuple):
    run_id: int
    tenant_id: str
    server_id: str
    turn: int  # this run's place in its tenant's own queue, oldest first


def pick_runs(candidates: Iterable[Candidate], places: int, busy_servers: set[str]) -> list[int]:
    """Up to `places` runs: in turns across tenants (each tenant's oldest first), at most
    one per server, none on a server that already has an image in flight.

    `candidates` must come ordered by (turn, age): the first of every tenant, then the
    second of every tenant, and so on, so that no tenant's big fleet starves the others.
    """
    picked: list[int] = []
    taken = set(busy_servers)
    for candidate in candidates:
        if len(picked) >= places:
            break
        if candidate.server_id in taken:
            continue
        taken.add(candidate.server_id)
        picked.append(candidate.run_id)
    return picked


def in_flight_count(session: orm.Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Run).where(in_states(IN_FLIGHT)))


def admit_waiting_runs(
    session: orm.Session, cap: int, now: dt.datetime, lease_s: float, run_timeout_s: float
) -> list[int]:
    """Admit what the cap allows; returns the admitted run ids, to publish after commit."""
    session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK)))
    places = cap - in_flight_count(session)
    if places <= 0:
        return []
    busy = set(session.scalars(sa.select(Run.server_id).where(in_states(IN_FLIGHT))))
    turn = sa.func.row_number().over(
        partition_by=Run.tenant_id, order_by=(Run.scheduled_for, Run.id)
    )
    waiting = (
        sa.select(Run.id, Run.tenant_id, Run.server_id, Run.scheduled_for, turn.label("turn"))
        .where(Run.state == RunState.PENDING, Run.not_before <= now)
        .subquery()
    )
    # Fetch a margin beyond the places: some candidates share a server and are passed over.
    rows = session.execute(
        sa.select(waiting.c.id, waiting.c.tenant_id, waiting.c.server_id, waiting.c.turn)
        .order_by(waiting.c.turn, waiting.c.scheduled_for, waiting.c.id)
        .limit(places * 2 + 100)
    ).all()
    picked = pick_runs((Candidate(*row) for row in rows), places, busy)
    if picked:
        # A retry keeps the deadline of its first admission: the time-out bounds the run.
        session.execute(
            moving(
                RunState.ADMITTED,
                Run.id == sa.any_(sa.cast(picked, postgresql.ARRAY(sa.BigInteger))),
            ).values(
                admitted_at=now,
                lease_until=now + dt.timedelta(seconds=lease_s),
                deadline_at=sa.func.coalesce(Run.deadline_at, deadline(now, run_timeout_s)),
            )
        )
    return picked
