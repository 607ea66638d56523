"""Marshmallow schemas of the tenant API: what a request may say and what an answer says."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from common.days import DAY_NAMES, day_number

MAX_RETENTION = 65535


class StrictInteger(fields.Integer):
    """An integer and nothing else: "7", 7.0 and true are refused, not coerced."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class DayOfWeek(fields.String):
    """A day name in any letter case, loaded as its number (Monday=0) and answered upper case."""

    default_error_messages = {"invalid_day": "Must be one of: " + ", ".join(DAY_NAMES) + "."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        text = super()._deserialize(value, attr, data, **kwargs)
        number = day_number(text)
        if number is None:
            raise self.make_error("invalid_day")
        return number

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else DAY_NAMES[value]


class ImageScheduleIn(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    retention = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_RETENTION),
        metadata={"description": "How many scheduled images to keep, 1 to 65535."},
    )
    day_of_week = DayOfWeek(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Weekly on this UTC day; absent or null means daily.",
            "enum": list(DAY_NAMES),
        },
    )


class ScheduleRequest(ma.Schema):
    class Meta:
        # Keys beside image_schedule are ignored, as the compatible API does.
        unknown = ma.EXCLUDE

    image_schedule = fields.Nested(ImageScheduleIn, required=True)


class ImageScheduleOut(ma.Schema):
    retention = fields.Integer(required=True)
    day_of_week = DayOfWeek(metadata={"enum": list(DAY_NAMES)})
    next_run_at = fields.String(
        required=True, metadata={"description": "Planned start of the next image (UTC)."}
    )

    @ma.post_dump
    def _drop_daily_day(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("day_of_week") is None:
            data.pop("day_of_week", None)
        return data


class ScheduleResponse(ma.Schema):
    image_schedule = fields.Nested(ImageScheduleOut, required=True)


class ScheduleListItem(ImageScheduleOut):
    server_id = fields.String(required=True)


class Link(ma.Schema):
    rel = fields.String(required=True)
    href = fields.String(required=True)


class ScheduleListResponse(ma.Schema):
    image_schedules = fields.List(fields.Nested(ScheduleListItem), required=True)
    image_schedules_links = fields.List(fields.Nested(Link))


class PageArgs(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Items per page, 1 to 1000."},
    )
    marker = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The last item of the previous page."},
    )
