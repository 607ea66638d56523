"""Fleets for planner tests, and the check that every slot is one its schedule allows."""

from __future__ import annotations

import datetime as dt

import numpy as np

from common import schedules
from common.db import transaction
from common.slots import in_window
from scheduler.planning import DAILY
from scheduler.planning.fleet import Fleet


def skewed_fleet(size: int, seed: int = 1):
    """30% daily; weekly ones crowded on Saturday and Sunday; two minutes to four hours."""
    rng = np.random.default_rng(seed)
    daily = rng.random(size) < 0.3
    p = np.array([0.09, 0.07, 0.07, 0.08, 0.11, 0.25, 0.33])
    days = np.where(daily, DAILY, rng.choice(7, size, p=p / p.sum())).astype(np.int8)
    durations = np.round(np.exp(rng.uniform(np.log(120), np.log(4 * 3600), size)))
    tenants = rng.integers(0, 40, size)
    return days, durations, tenants


def sunday_fleet(size: int, seed: int = 7):
    """Weekly only, 60% on Sunday; one minute to six hours, lengths spread widely."""
    rng = np.random.default_rng(seed)
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.05, 0.15, 0.6])
    durations = np.round(np.exp(rng.uniform(np.log(60), np.log(6 * 3600), size)))
    days = rng.choice(7, size, p=p / p.sum()).astype(np.int8)
    tenants = rng.integers(0, max(5, size // 30), size)
    return days, durations, tenants


def fleet_of(days: np.ndarray, lengths: np.ndarray) -> Fleet:
    """The planner's view of runs of `lengths` whole minutes, all of one tenant."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return Fleet(days, lengths * 60.0, lengths, np.zeros(days.size, dtype=np.int64))


def crowd(sessions, count: int, day: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """`count` one-hour schedules all on the same minute: the plan a naive scheduler makes."""
    slot = 3600 if day is None else day * 86400 + 3600
    with transaction(sessions) as session:
        for index in range(count):
            row = schedules.upsert(
                session,
                tenant_id=f"t{index % 3}",
                server_id=f"{day}-{index}",
                server_name="s",
                retention=1,
                day_of_week=day,
                slot_s=slot,
                default_duration_s=3600,
                now=dt.datetime.now(dt.UTC),
            )
            row.expected_duration_s = 3600


def assert_slots_allowed(days: np.ndarray, slots: np.ndarray) -> None:
    for day, slot in zip(days.tolist(), slots.tolist(), strict=True):
        assert in_window(None if day == DAILY else day, slot), (day, slot)
