"""Settings operators change while the service runs (the in-flight cap), kept in the database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import insert

from common.models import ServiceSetting

CAP = "inflight_cap"


def inflight_cap(session: orm.Session, default: int) -> int:
    value = session.scalar(sa.select(ServiceSetting.value).where(ServiceSetting.name == CAP))
    return default if value is None else int(value)


def set_inflight_cap(session: orm.Session, cap: int) -> None:
    if cap < 1:
        raise ValueError("the in-flight cap must be at least 1")
    statement = insert(ServiceSetting).values(name=CAP, value=str(cap))
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ServiceSetting.name], set_={"value": statement.excluded.value}
        )
    )
