"""A simulated server with a daily schedule, made straight in the database for step tests."""

from __future__ import annotations

import datetime as dt

from common import schedules
from common.db import transaction


def scheduled_server(
    sessions, cloud, tenant: str, now: dt.datetime, fault: str | None = None
) -> str:  # type: ignore[no-untyped-def]
    """A 1 GB server of `tenant` on the simulated cloud, its schedule keeping 2 images."""
    [server] = cloud.add_servers(tenant, 1, disk_gb=1, fault=fault)
    with transaction(sessions) as session:
        schedules.upsert(
            session,
            tenant_id=tenant,
            server_id=server,
            server_name="web",
            retention=2,
            day_of_week=None,
            slot_s=3600,
            default_duration_s=60,
            now=now,
        )
    return server
