"""The clock, injected where time matters so that tests can freeze or move it."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_z(moment: dt.datetime) -> str:
    """The API's time format: UTC, seconds, with a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_z_or_none(moment: dt.datetime | None) -> str | None:
    """`iso_z`, for a moment that may not have come yet (a run not started)."""
    return None if moment is None else iso_z(moment)
