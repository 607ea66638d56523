"""Settings operators change while the service runs, kept in the database so that every
process reads the same value: the in-flight cap and the per-tenant ceiling on places. Each
starts from its environment setting until an operator sets it through /admin/v1."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert

from common.db import read_row
from common.models import ServiceSetting

CAP = "inflight_cap"
TENANT_MAX = "tenant_inflight_max"


# Built once: placing a schedule reads the cap on each POST that moves one.
_VALUE = sa.select(ServiceSetting.value).where(ServiceSetting.name == sa.bindparam("name"))


def _read(session: orm.Session, name: str, default: int) -> int:
    return _value_or(session.scalar(_VALUE, {"name": name}), default)


def _value_or(value: str | None, default: int) -> int:
    return default if value is None else int(value)


def _write(session: orm.Session, name: str, value: int) -> None:
    statement = insert(ServiceSetting).values(name=name, value=str(value))
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ServiceSetting.name], set_={"value": statement.excluded.value}
        )
    )


def inflight_cap(session: orm.Session, default: int) -> int:
    return _read(session, CAP, default)


_LIMITS = sa.select(ServiceSetting.name, ServiceSetting.value).where(
    ServiceSetting.name.in_((CAP, TENANT_MAX))
)


def admission_limits(
    session: orm.Session, default_cap: int, default_tenant_max: int
) -> tuple[int, int]:
    """The cap and the per-tenant ceiling, in one statement: every admission reads both."""
    values = dict(session.execute(_LIMITS).tuples().all())
    return (
        _value_or(values.get(CAP), default_cap),
        _value_or(values.get(TENANT_MAX), default_tenant_max),
    )


def read_inflight_cap(reads: orm.sessionmaker[orm.Session], default: int) -> int:
    """`inflight_cap` through `common.db.read_row` on the read sessions' engine: no Session."""
    row = read_row(reads, _VALUE, {"name": CAP})
    return _value_or(None if row is None else row.value, default)


def set_inflight_cap(session: orm.Session, cap: int) -> None:
    if cap < 1:
        raise ValueError("the in-flight cap must be at least 1")
    _write(session, CAP, cap)


def tenant_inflight_max(session: orm.Session, default: int) -> int:
    """The most places one tenant may hold; 0: no ceiling but the cap."""
    return _read(session, TENANT_MAX, default)


def set_tenant_inflight_max(session: orm.Session, ceiling: int) -> None:
    if ceiling < 0:
        raise ValueError("the per-tenant ceiling must be 0 (none) or more")
    _write(session, TENANT_MAX, ceiling)
