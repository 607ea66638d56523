"""Compute drivers behind one interface; `make_driver` picks the configured one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import orm

from common.compute.base import ComputeDriver
from common.settings import Settings


def make_driver(
    settings: Settings,
    sessions: orm.sessionmaker[orm.Session],
    clock: Callable[[], dt.datetime],
) -> ComputeDriver:
    if settings.compute_driver == "openstack":
        from common.compute.openstack import OpenStackDriver

        return OpenStackDriver(
            **settings.openstack_credentials(),
            region_name=settings.os_region_name or None,
            interface=settings.os_interface,
            timeout=settings.compute_timeout_s,
        )
    from common.compute.simulated import Draws, SimulatedDriver

    return SimulatedDriver(
        sessions,
        seconds_per_gb=settings.sim_seconds_per_gb,
        clock=clock,
        timeout_s=settings.compute_timeout_s,
        slow_create_s=settings.sim_slow_create_s,
        draws=Draws(
            duration_sigma=settings.sim_duration_sigma,
            create_error_rate=settings.sim_create_error_rate,
            image_error_rate=settings.sim_image_error_rate,
            seed=settings.sim_seed,
        ),
    )
