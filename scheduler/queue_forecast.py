"""Where a waiting run stands: how many runs admission starts before it, and when it may start.

The order is admission's own (`pick_runs`: max-min fair share over the places held now, each
tenant's runs oldest first, one image per server), taken over every waiting run at once; a run
of a server that is busy, or whose back-off has not ended, comes after those that could start
now. The estimate replays that order on expected durations: each place frees when the run
holding it is expected to end, and the next run in the order takes it.

It is a forecast, not a promise: images run longer or shorter than expected, and the order
shifts as tenants' shares change and new runs arrive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy import orm

from common.models import Run, Schedule
from common.runs import IN_FLIGHT, RunState, in_states
from scheduler.admission import Candidate, pick_runs

#: A run whose schedule is gone has no expected duration of its own: a quarter of an hour.
DEFAULT_EXPECTED_S = 900.0


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A waiting run, and how long its image is expected to take."""

    run_id: int
    tenant_id: str
    server_id: str
    scheduled_for: dt.datetime
    not_before: dt.datetime
    expected_s: float


@dataclasses.dataclass(frozen=True)
class Forecast:
    #: How many waiting runs admission starts before this one.
    position: int
    #: When it may start, if the runs before it take their expected time.
    estimated_start_at: dt.datetime


def forecast(
    waiting: Sequence[Waiting],
    in_flight_ends: Iterable[dt.datetime],
    held: Mapping[str, int],
    busy_servers: set[str],
    cap: int,
    now: dt.datetime,
    tenant_max: int = 0,
) -> dict[int, Forecast]:
    """Each waiting run's position and estimated start (`in_flight_ends`: when each run in
    flight is expected to end)."""
    order = admission_order(waiting, held, busy_servers, now, tenant_max)
    by_id = {run.run_id: run for run in waiting}
    # One entry per place under the cap: when it is next free.
    places = sorted(max(end, now) for end in in_flight_ends)[:cap]
    places += [now] * max(cap - len(places), 0)
    heapq.heapify(places)
    server_free: dict[str, dt.datetime] = {}
    result = {}
    for position, run_id in enumerate(order):
        run = by_id[run_id]
        free = heapq.heappop(places) if places else now
        start = max(free, now, run.not_before, server_free.get(run.server_id, now))
        end = start + dt.timedelta(seconds=run.expected_s)
        heapq.heappush(places, end)
        server_free[run.server_id] = end
        result[run_id] = Forecast(position, start)
    return result


def admission_order(
    waiting: Sequence[Waiting],
    held: Mapping[str, int],
    busy_servers: set[str],
    now: dt.datetime,
    tenant_max: int = 0,
) -> list[int]:
    """Every waiting run's id, in the order admission would start them from now."""
    ready = [r for r in waiting if r.not_before <= now]
    later = [r for r in waiting if r.not_before > now]
    order: list[int] = []
    counts = dict(held)
    busy = set(busy_servers)
    # pick_runs gives one run per server a round: a server's next run waits for the next.
    while ready:
        candidates = [Candidate(r.run_id, r.tenant_id, r.server_id, r.scheduled_for) for r in ready]
        picked = pick_runs(candidates, len(candidates), counts, busy, tenant_max)
        if not picked:
            break
        order += picked
        chosen = set(picked)
        for run in ready:
            if run.run_id in chosen:
                counts[run.tenant_id] = counts.get(run.tenant_id, 0) + 1
        ready = [r for r in ready if r.run_id not in chosen]
        busy = set()
    rest = sorted(ready + later, key=lambda r: (max(r.not_before, now), r.scheduled_for, r.run_id))
    return order + [r.run_id for r in rest]


def server_forecasts(
    session: orm.Session, server_id: str, now: dt.datetime, cap: int, tenant_max: int
) -> dict[int, Forecast]:
    """The forecast of each waiting run of the server, from every run waiting or in flight."""
    duration = sa.func.coalesce(Schedule.expected_duration_s, DEFAULT_EXPECTED_S)
    pending = session.execute(
        sa.select(Run.id, Run.tenant_id, Run.server_id, Run.scheduled_for, Run.not_before, duration)
        .outerjoin(Schedule, Schedule.id == Run.schedule_id)
        .where(Run.state == RunState.PENDING)
    ).all()
    if not any(row.server_id == server_id for row in pending):
        return {}
    flying = session.execute(
        sa.select(Run.tenant_id, Run.server_id, Run.admitted_at, duration)
        .outerjoin(Schedule, Schedule.id == Run.schedule_id)
        .where(in_states(IN_FLIGHT))
    ).all()
    ends = [(row.admitted_at or now) + dt.timedelta(seconds=float(row[3])) for row in flying]
    held: dict[str, int] = {}
    for row in flying:
        held[row.tenant_id] = held.get(row.tenant_id, 0) + 1
    waiting = [Waiting(*row[:5], float(row[5])) for row in pending]
    everyone = forecast(
        waiting, ends, held, {row.server_id for row in flying}, cap, now, tenant_max
    )
    return {row.id: everyone[row.id] for row in pending if row.server_id == server_id}
