"""Before the soak: the fleet's servers in the simulated cloud, images of their users' own, a
token per tenant, every schedule enabled through the API, the cap set and the fleet planned."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import sqlalchemy as sa
from sqlalchemy import orm

from api.auth.static import add_tokens
from common.clock import Clock
from common.compute.base import CREATED_BY_KEY, CREATED_BY_VALUE
from common.compute.simulated import SimulatedDriver
from common.db import transaction
from common.slots import next_run_at
from scheduled_images.soak.fleet import FleetServer
from scheduler.fleet_plan import RebalanceSummary, rebalance_fleet
from scheduler.rebalances import lock_rebalancing

OPERATOR_TENANT = "operators"
#: Concurrent requests while enabling the fleet.
ENABLERS = 8
DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
#: Images a service before ours made that kept their markers make retention's case; those
#: the soak adds are its users' own: made by hand, or made by the service and pinned.
PINNED_NAME = "Daily-pinned-{server}"


@dataclasses.dataclass(frozen=True)
class Tokens:
    by_tenant: dict[str, str]
    operator: str


def add_fleet_to_cloud(driver: SimulatedDriver, fleet: list[FleetServer]) -> list[str]:
    """The fleet's servers in the cloud; their ids in the fleet's order."""
    by_tenant: dict[str, list[int]] = collections.defaultdict(list)
    for index, server in enumerate(fleet):
        by_tenant[server.tenant].append(index)
    ids = [""] * len(fleet)
    for tenant, indexes in by_tenant.items():
        disks = [fleet[i].disk_gb for i in indexes]
        for index, server_id in zip(
            indexes, driver.add_servers(tenant, len(indexes), disk_gb=disks), strict=True
        ):
            ids[index] = server_id
    return ids


def add_own_images(
    driver: SimulatedDriver, fleet: list[FleetServer], ids: list[str]
) -> dict[str, str]:
    """Images of the users' own that no prune may delete: image id -> "manual" or "pinned".

    A pinned image was made by the service and its owner took the server's marker off it.
    """
    own = {}
    for server, server_id in zip(fleet, ids, strict=True):
        if server.extra_image == "manual":
            own[driver.create_manual_image(server_id)] = "manual"
        elif server.extra_image == "pinned":
            name = PINNED_NAME.format(server=server_id[:8])
            metadata = {CREATED_BY_KEY: CREATED_BY_VALUE}
            own[driver.create_image(server.tenant, server_id, name, metadata)] = "pinned"
    return own


def make_tokens(tokens_file: Path, tenants: list[str]) -> Tokens:
    tokens = Tokens({t: secrets.token_urlsafe(24) for t in tenants}, secrets.token_urlsafe(24))
    entries = {token: (tenant, ["creator"]) for tenant, token in tokens.by_tenant.items()}
    entries[tokens.operator] = (OPERATOR_TENANT, ["admin"])
    add_tokens(tokens_file, entries)
    return tokens


def enable_fleet(
    base: str,
    fleet: list[FleetServer],
    ids: list[str],
    tokens: Tokens,
    progress: Callable[[int], None],
) -> None:
    """Every schedule enabled as its tenant would, one POST each, some at a time."""
    local = threading.local()

    def enable(index: int) -> None:
        server, server_id = fleet[index], ids[index]
        if not hasattr(local, "http"):
            local.http = requests.Session()
        day = None if server.day_of_week is None else DAY_NAMES[server.day_of_week]
        answer = local.http.post(
            f"{base}/v2/{server.tenant}/servers/{server_id}/rax-si-image-schedule",
            json={"image_schedule": {"retention": server.retention, "day_of_week": day}},
            headers={"X-Auth-Token": tokens.by_tenant[server.tenant]},
            timeout=30,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"enabling {server_id}: {answer.status_code} {answer.text[:300]}")

    with ThreadPoolExecutor(ENABLERS) as pool:
        for done, _ in enumerate(pool.map(enable, range(len(fleet))), start=1):
            progress(done)


def set_cap(base: str, tokens: Tokens, cap: int) -> None:
    answer = requests.put(
        f"{base}/admin/v1/cap",
        json={"inflight_cap": cap},
        headers={"X-Auth-Token": tokens.operator},
        timeout=30,
    )
    answer.raise_for_status()


def record_durations(
    sessions: orm.sessionmaker[orm.Session], fleet: list[FleetServer], ids: list[str]
) -> None:
    """Each schedule's expected duration, as if learnt from earlier images of its server."""
    with transaction(sessions) as session:
        session.execute(
            sa.text(
                """
                UPDATE schedules SET expected_duration_s = known.seconds, duration_samples = 3
                FROM unnest(CAST(:ids AS text[]), CAST(:seconds AS float8[]))
                    AS known(server_id, seconds)
                WHERE schedules.server_id = known.server_id
                """
            ),
            {"ids": ids, "seconds": [s.expected_s for s in fleet]},
        )


def plan_fleet(sessions: orm.sessionmaker[orm.Session], cap: int, clock: Clock) -> RebalanceSummary:
    """A rebalance under the cap, here and now, as `plan rebalance` does."""
    with transaction(sessions) as session:
        lock_rebalancing(session, wait=True)
        return rebalance_fleet(session, float(cap), clock.now())


def hold_schedules(sessions: orm.sessionmaker[orm.Session], now: dt.datetime) -> None:
    """Pause every schedule (no run is made of it) while the workers start, and at the end.

    The rows are locked in id order, as a poll locks its runs' schedules: a poll at work when
    the soak ends then waits for this, or this for it, and neither is aborted as deadlocked.
    """
    with transaction(sessions) as session:
        session.execute(
            sa.text(
                "UPDATE schedules SET paused_at = :now"
                " WHERE id IN (SELECT id FROM schedules ORDER BY id FOR UPDATE)"
            ),
            {"now": now},
        )


def start_window(sessions: orm.sessionmaker[orm.Session], start: dt.datetime) -> None:
    """Every schedule resumes with its next run at its first slot from `start`, when the soak
    begins: the plan takes effect then, whatever the clock read while the fleet was enabled,
    planned and the workers started."""
    # A slot at `start` itself is the soak's first: next_run_at counts from strictly after.
    just_before = start - dt.timedelta(microseconds=1)
    with transaction(sessions) as session:
        rows = session.execute(sa.text("SELECT id, day_of_week, slot_s FROM schedules")).all()
        session.execute(
            sa.text(
                """
                UPDATE schedules SET next_run_at = first.at, paused_at = NULL
                FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS first(id, at)
                WHERE schedules.id = first.id
                """
            ),
            {
                "ids": [r.id for r in rows],
                "ats": [next_run_at(r.day_of_week, r.slot_s, just_before) for r in rows],
            },
        )
