"""Admission under the cap: which waiting runs may start now.

Places are shared by max-min fair share, counted over every run in flight rather than over
one admission: the next place goes to the waiting tenant that holds the fewest places now,
and each tenant's own runs go oldest first. So while several tenants wait, each holds an
equal share of the places, give or take one, whatever happened at earlier ticks.

The decision is `pick_runs`, a plain function; `admit_waiting_runs` feeds it from the
database under one advisory lock, so that however many ticks and workers admit at once,
the runs in flight never exceed the cap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Set
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from common.models import Run
from common.runs import IN_FLIGHT, RunState, deadline, in_states, moving

# Any constant shared by every process; it names the admission critical section.
ADMISSION_LOCK = 0x5C4ED1A6
SORT_MEMORY = "32MB"


class Candidate(NamedTuple):
    """A waiting run past its back-off."""

    run_id: int
    tenant_id: str
    server_id: str
    scheduled_for: dt.datetime


@dataclasses.dataclass(frozen=True)
class InFlight:
    """The runs holding places now: how many, each tenant's share, the busy servers."""

    total: int
    held: Mapping[str, int]
    busy_servers: Set[str]

    @classmethod
    def of(cls, runs: Iterable[tuple[str, str]]) -> InFlight:
        """From (tenant, server) pairs of the runs in flight."""
        pairs = list(runs)
        return cls(len(pairs), Counter(t for t, _ in pairs), frozenset(s for _, s in pairs))


def pick_runs(
    waiting: Iterable[Candidate],
    places: int,
    held: Mapping[str, int],
    busy_servers: Set[str],
    tenant_max: int = 0,
) -> list[int]:
    """Up to `places` runs, in the order they are admitted.

    Each place goes to the tenant holding the fewest places (`held`, plus what it has been
    given here); among tenants holding as many, to the one whose next run is oldest (by
    scheduled_for, then run id). A tenant's runs go oldest first. A server in
    `busy_servers`, or already given a run here, gets none: at most one image per server.
    A tenant holding `tenant_max` places gets no more (0: no such ceiling). A place is left
    empty only when no waiting run may take it.
    """
    queues: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in waiting:
        queues[candidate.tenant_id].append(candidate)
    for queue in queues.values():
        queue.sort(key=lambda c: (c.scheduled_for, c.run_id), reverse=True)  # oldest last
    holding = Counter({tenant: held.get(tenant, 0) for tenant in queues})
    taken = set(busy_servers)
    # One entry per tenant with a run it could be given: (places held, its next run's age).
    turns: list[tuple[int, dt.datetime, int, str]] = []

    def queue_up(tenant: str) -> None:
        queue = queues[tenant]
        while queue and queue[-1].server_id in taken:
            queue.pop()
        if queue and not (tenant_max and holding[tenant] >= tenant_max):
            head = queue[-1]
            heapq.heappush(turns, (holding[tenant], head.scheduled_for, head.run_id, tenant))

    for tenant in queues:
        queue_up(tenant)
    picked: list[int] = []
    while turns and len(picked) < places:
        tenant = heapq.heappop(turns)[-1]
        head = queues[tenant][-1]
        # Servers belong to one tenant, but the rule holds even if another took this one.
        if head.server_id not in taken:
            queues[tenant].pop()
            taken.add(head.server_id)
            holding[tenant] += 1
            picked.append(head.run_id)
        # Queued again with its next run: its key only grows, so the heap's order holds.
        queue_up(tenant)
    return picked


def in_flight_count(session: orm.Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Run).where(in_states(IN_FLIGHT)))


def in_flight(session: orm.Session) -> InFlight:
    return InFlight.of(
        session.execute(sa.select(Run.tenant_id, Run.server_id).where(in_states(IN_FLIGHT)))
    )


# The waiting runs `pick_runs` could give the places to, and no more: the same rules and the
# same order, so the first `places` rows are what it picks from the whole queue, and it stays
# a few rows of work however many runs wait. Runs on a busy server, runs past their window
# (the sweep skips them, but may come later than this) and any but a server's oldest are left
# out; `holding` is what the run's tenant would hold once given it, so the order (holding,
# age) is the order in which `pick_runs` hands out places. The partitions only group, so they
# compare bytes (COLLATE "C"), not the database's slower text order.
_CANDIDATES = sa.text(
    """
    WITH held AS (
        SELECT * FROM unnest(CAST(:held_tenants AS text[]), CAST(:held_counts AS int[]))
            AS h(tenant_id, held)
    ),
    eligible AS (
        SELECT id, tenant_id, server_id, scheduled_for,
               row_number() OVER (PARTITION BY server_id COLLATE "C"
                                  ORDER BY scheduled_for, id) AS nth
        FROM runs
        WHERE state = :pending AND not_before <= :now AND start_by > :now
          AND NOT EXISTS (SELECT FROM unnest(CAST(:busy AS text[])) AS b(server_id)
                          WHERE b.server_id = runs.server_id)
    ),
    queued AS (
        SELECT e.id, e.tenant_id, e.server_id, e.scheduled_for,
               coalesce(h.held, 0)
                 + row_number() OVER (PARTITION BY e.tenant_id COLLATE "C"
                                      ORDER BY e.scheduled_for, e.id) AS holding
        FROM eligible AS e LEFT JOIN held AS h ON h.tenant_id = e.tenant_id
        WHERE e.nth = 1
    )
    SELECT id, tenant_id, server_id, scheduled_for FROM queued
    WHERE CAST(:tenant_max AS int) = 0 OR holding <= :tenant_max
    ORDER BY holding, scheduled_for, id
    LIMIT :places
    """
)


def waiting_candidates(
    session: orm.Session, now: dt.datetime, places: int, taken: InFlight, tenant_max: int = 0
) -> list[Candidate]:
    """The waiting runs that could take the next `places` places, in admission order."""
    tenants = sorted(taken.held)
    rows = session.execute(
        _CANDIDATES,
        {
            "held_tenants": tenants,
            "held_counts": [taken.held[t] for t in tenants],
            "busy": sorted(taken.busy_servers),
            "pending": RunState.PENDING.value,
            "now": now,
            "tenant_max": tenant_max,
            "places": places,
        },
    )
    return [Candidate(*row) for row in rows]


_LOCK_AND_SORT_MEMORY = sa.text(
    "SELECT pg_advisory_xact_lock(:lock), set_config('work_mem', :memory, true)"
)


def admit_waiting_runs(
    session: orm.Session,
    cap: int,
    now: dt.datetime,
    lease_s: float,
    run_timeout_s: float,
    tenant_max: int = 0,
) -> list[int]:
    """Admit what the cap allows; returns the admitted run ids, to publish after commit.

    `tenant_max` is the most places one tenant may hold (0: no such ceiling).
    """
    # The candidates' query sorts every waiting run; in memory, not on disk, up to ~100,000:
    # the transaction's work_mem is set with the lock, in one round trip.
    session.execute(_LOCK_AND_SORT_MEMORY, {"lock": ADMISSION_LOCK, "memory": SORT_MEMORY})
    taken = in_flight(session)
    places = cap - taken.total
    if places <= 0:
        return []
    candidates = waiting_candidates(session, now, places, taken, tenant_max)
    picked = pick_runs(candidates, places, taken.held, taken.busy_servers, tenant_max)
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
