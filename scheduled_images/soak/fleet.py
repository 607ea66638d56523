"""A fleet to soak: tenants of skewed sizes, daily and weekly schedules, image durations.

Pure: a seed in, the same fleet out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Share of schedules that are weekly.
WEEKLY_SHARE = 0.3
#: How much each weekday draws weekly schedules, Monday first: the weekend is crowded.
DAY_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.5, 3.0, 3.0)
#: Median expected image duration, simulated seconds, and the spread of its lognormal.
MEDIAN_DURATION_S = 600.0
DURATION_SIGMA = 0.5
#: Tenant sizes fall as a power of their rank: a few large tenants, many small ones.
TENANT_SKEW = 1.2
#: Shares of servers that also get an image made by hand, or a pinned one, at the start.
MANUAL_SHARE = 0.05
PINNED_SHARE = 0.03


@dataclasses.dataclass(frozen=True)
class FleetServer:
    tenant: str
    disk_gb: int
    retention: int
    #: Monday=0 .. Sunday=6, or None for a daily schedule.
    day_of_week: int | None
    #: What the service expects an image to take: the disk at the cloud's seconds per GB.
    expected_s: float
    #: "manual", "pinned" or None: an image of the user's own made at the start.
    extra_image: str | None


def tenant_names(tenants: int) -> list[str]:
    return [f"soak-{n:05d}" for n in range(tenants)]


def tenant_sizes(servers: int, tenants: int, rng: np.random.Generator) -> np.ndarray:
    """Servers per tenant: each at least one, the rest by a power law of the tenant's rank."""
    if tenants > servers:
        raise ValueError(f"{tenants} tenants need at least as many servers, not {servers}")
    weights = 1.0 / np.arange(1, tenants + 1) ** TENANT_SKEW
    return 1 + rng.multinomial(servers - tenants, weights / weights.sum())


def draw_fleet(servers: int, tenants: int, seed: int, seconds_per_gb: float) -> list[FleetServer]:
    rng = np.random.default_rng(seed)
    owners = np.repeat(tenant_names(tenants), tenant_sizes(servers, tenants, rng))
    expected = MEDIAN_DURATION_S * rng.lognormal(0.0, DURATION_SIGMA, servers)
    disks = np.maximum(1, np.rint(expected / seconds_per_gb)).astype(int)
    weekly = rng.random(servers) < WEEKLY_SHARE
    days = rng.choice(7, size=servers, p=np.array(DAY_WEIGHTS) / sum(DAY_WEIGHTS))
    retention = np.where(weekly, rng.integers(2, 5, servers), rng.integers(2, 8, servers))
    extra = rng.random(servers)
    return [
        FleetServer(
            tenant=str(owners[i]),
            disk_gb=int(disks[i]),
            retention=int(retention[i]),
            day_of_week=int(days[i]) if weekly[i] else None,
            expected_s=float(disks[i] * seconds_per_gb),
            extra_image=(
                "manual"
                if extra[i] < MANUAL_SHARE
                else "pinned"
                if extra[i] < MANUAL_SHARE + PINNED_SHARE
                else None
            ),
        )
        for i in range(servers)
    ]


def fleet_arrays(fleet: list[FleetServer]) -> tuple[np.ndarray, np.ndarray]:
    """Days (-1 for daily, the planner's DAILY) and expected durations, for the planner."""
    days = np.array([-1 if s.day_of_week is None else s.day_of_week for s in fleet], np.int8)
    return days, np.array([s.expected_s for s in fleet], dtype=np.float64)
