"""Placing one schedule at once when it is enabled or changed."""

from __future__ import annotations

import zlib

from common.models import Schedule
from common.slots import DAY_S


def choose_slot(current: Schedule | None, day_of_week: int | None, server_id: str) -> int:
    """Keep a schedule's slot when its kind and day stay; otherwise give it a new one."""
    if current is not None and current.day_of_week == day_of_week:
        return current.slot_s
    spread = zlib.crc32(server_id.encode()) % DAY_S
    return spread if day_of_week is None else day_of_week * DAY_S + spread
