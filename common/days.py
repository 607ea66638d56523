"""Day names of the API and their numbers (Monday=0, as Python's weekday())."""

from __future__ import annotations

DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_NUMBERS = {name: number for number, name in enumerate(DAY_NAMES)}


def day_number(name: str) -> int | None:
    """The day's number, any letter case; None when it names no day."""
    return _NUMBERS.get(name.upper()) if isinstance(name, str) else None
