"""Watching fair shares from the database: the places each tenant holds, sampled while the
service runs, and where each tenant's images finished. Shared by the end-to-end test and the
fairness bench."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable

import sqlalchemy as sa

from common.db import transaction
from common.models import Run
from common.runs import IN_FLIGHT, RunState, in_states, request_run


def ask_run_nows(pipeline, fleets: dict[str, int], disk_gb: Callable[[int], int]) -> int:  # type: ignore[no-untyped-def]
    """Run-nows for each tenant's whole fleet, all at once (one transaction, so no tenant is
    admitted before the others wait), the first tenant's asked for first (oldest). Server `i`,
    counted across tenants so that no two tenants' images end together in step, has
    `disk_gb(i)`. Returns how many runs were asked for."""
    sizes = iter(disk_gb(i) for i in range(sum(fleets.values())))
    servers = {
        tenant: [pipeline.cloud.add_servers(tenant, 1, next(sizes))[0] for _ in range(size)]
        for tenant, size in fleets.items()
    }
    for tenant, ids in servers.items():
        for server in ids:
            pipeline.enable(tenant, server, due=False)
    with transaction(pipeline.sessions) as session:
        for tenant, ids in servers.items():
            for server in ids:
                request_run(session, tenant, server, dt.datetime.now(dt.UTC))
    return sum(fleets.values())


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the runs: places held per tenant, and the tenants with runs waiting."""

    held: dict[str, int]
    waiting: frozenset[str]

    @property
    def total(self) -> int:
        return sum(self.held.values())

    def spread(self) -> int:
        """Most places a waiting tenant holds minus fewest; 0 with fewer than two waiting."""
        shares = [self.held.get(tenant, 0) for tenant in self.waiting]
        return max(shares) - min(shares) if len(shares) > 1 else 0


def sample(sessions) -> Sample:  # type: ignore[no-untyped-def]
    """One statement, so one snapshot: what a single admission would have seen."""
    holding = sa.func.count().filter(in_states(IN_FLIGHT))
    waits = sa.func.count().filter(Run.state == RunState.PENDING)
    with sessions() as session:
        rows = session.execute(sa.select(Run.tenant_id, holding, waits).group_by(Run.tenant_id))
        rows = rows.all()
    return Sample(
        {tenant: held for tenant, held, _ in rows if held},
        frozenset(tenant for tenant, _, waiting in rows if waiting),
    )


def watch(sessions, done: Callable[[Sample], bool], timeout: float, every: float = 0.1):  # type: ignore[no-untyped-def]
    """Samples every `every` seconds until `done` says so; AssertionError after `timeout`."""
    samples: list[Sample] = []
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        samples.append(sample(sessions))
        if done(samples[-1]):
            return samples
        time.sleep(every)
    raise AssertionError(f"not done in {timeout} s; last sample {samples[-1]}")


def full_while_several_wait(samples: list[Sample], cap: int) -> list[Sample]:
    """The samples that judge fairness: every place taken and two or more tenants waiting.

    A place just freed and not yet given out is a moment between two admissions, not a share.
    """
    return [s for s in samples if s.total == cap and len(s.waiting) > 1]


def finish_positions(sessions) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """Each tenant's finished runs as positions (1 = the first image of all to finish)."""
    with sessions() as session:
        rows = session.execute(
            sa.select(Run.tenant_id)
            .where(Run.finished_at.is_not(None))
            .order_by(Run.finished_at, Run.id)
        ).scalars()
        positions: dict[str, list[int]] = {}
        for position, tenant in enumerate(rows, 1):
            positions.setdefault(tenant, []).append(position)
    return positions
