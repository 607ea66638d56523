"""Marshmallow schemas of the tenant API: what a request may say and what an answer says."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from api.errors import FALLBACK_KIND, KINDS
from common.days import DAY_NAMES, day_number
from common.images import Fate, RetentionReason
from common.models import REBALANCE_STATES
from common.runs import RUN_STATES

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
        required=True,
        allow_none=True,
        metadata={
            "description": "Planned start of the next image (UTC); null while paused (extension)."
        },
    )
    paused = fields.Boolean(
        required=True,
        metadata={
            "description": "True while paused: no scheduled image is made, run-now still "
            "works; resume, or enable the schedule again, to end it (extension)."
        },
    )
    last_success_at = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "When the newest image of this schedule became ACTIVE (UTC), "
            "or null (extension)."
        },
    )
    stale = fields.Boolean(
        required=True,
        metadata={
            "description": "True when the schedule is older than one period and no image of "
            "it became ACTIVE within the last period plus 12 hours (daily: 36 h; weekly: "
            "7 days 12 h). A paused schedule is never stale (extension)."
        },
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


class ScheduleListArgs(PageArgs):
    stale = fields.Boolean(
        load_default=None,
        metadata={
            "description": "`true`: only stale schedules; `false`: only those not stale; "
            "absent: all (extension)."
        },
    )


class ErrorDetail(ma.Schema):
    message = fields.String(required=True)
    code = fields.Integer(required=True)


# Every error is answered as {"<kind>": {"message", "code"}} (api/errors.py), one kind a body;
# the document names each kind so that clients and the fuzz tests can check the answer.
ErrorBody = ma.Schema.from_dict(
    {kind: fields.Nested(ErrorDetail) for kind in sorted({*KINDS.values(), FALLBACK_KIND})},
    name="ErrorBody",
)


class RunOut(ma.Schema):
    id = fields.Integer(required=True)
    trigger = fields.String(
        required=True, metadata={"description": "`schedule`, or `manual` for a run now."}
    )
    scheduled_for = fields.String(required=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    state = fields.String(
        required=True,
        metadata={"enum": list(RUN_STATES)},
    )
    image_id = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    error = fields.String(
        allow_none=True,
        metadata={
            "description": "`<reason>: <what happened>`, e.g. `create_error: the cloud "
            "answered 500`."
        },
    )


class RunOutWithPlace(RunOut):
    position = fields.Integer(
        allow_none=True,
        metadata={
            "description": "How many waiting runs the service will start before this one, in "
            "its admission order (max-min fair share across tenants); null once started."
        },
    )
    estimated_start_at = fields.String(
        allow_none=True,
        metadata={
            "description": "When it may start if the images ahead take their expected time; "
            "null once started."
        },
    )


class RunsResponse(ma.Schema):
    runs = fields.List(fields.Nested(RunOutWithPlace), required=True)
    runs_links = fields.List(fields.Nested(Link))


class RunResponse(ma.Schema):
    run = fields.Nested(RunOutWithPlace, required=True)


class RunPageArgs(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    limit = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Runs per page, 1 to 1000."},
    )
    marker = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=2**62),
        metadata={"description": "The id of the last run of the previous page."},
    )


class ImageVerdictOut(ma.Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"description": "As the cloud reports it: `QUEUED`, `SAVING`, `ACTIVE`, ..."},
    )
    created_at = fields.String(required=True, metadata={"description": "UTC, ISO 8601."})
    scheduled = fields.Boolean(
        required=True,
        metadata={
            "description": "Carries both markers of the service for this server: an image "
            "retention counts."
        },
    )
    fate = fields.String(
        required=True,
        metadata={
            "enum": [f.value for f in Fate],
            "description": "What the next prune does with the image.",
        },
    )
    reason = fields.String(
        required=True,
        metadata={
            "enum": [r.value for r in RetentionReason],
            "description": "`newest`: among the newest `retention` scheduled `ACTIVE` images; "
            "`beyond_retention`: a scheduled `ACTIVE` image older than those (the only reason "
            "an image is deleted); `manual`: not made by the service (no marker); `pinned`: "
            "made by the service, its marker removed; `not_active`: a scheduled image not "
            "`ACTIVE` (in progress or failed), never counted nor deleted.",
        },
    )


class ImagesResponse(ma.Schema):
    images = fields.List(
        fields.Nested(ImageVerdictOut),
        required=True,
        metadata={"description": "Every image of the server the cloud lists, newest first."},
    )


class CapIn(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    inflight_cap = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "Most image creations in flight across the cloud."},
    )


class CapOut(ma.Schema):
    inflight_cap = fields.Integer(required=True)
    in_flight = fields.Integer(required=True)


class TenantInflightMaxIn(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    tenant_inflight_max = StrictInteger(
        required=True,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={
            "description": "Most image creations one tenant may have in flight; 0: no "
            "ceiling but the cap. Places are shared fairly across tenants either way."
        },
    )


class TenantInflightMaxOut(ma.Schema):
    tenant_inflight_max = fields.Integer(required=True)
    inflight_cap = fields.Integer(required=True)
    most_held = fields.Integer(
        required=True,
        metadata={"description": "The most places one tenant holds now."},
    )


class AdminRunOut(RunOut):
    tenant_id = fields.String(required=True)
    server_id = fields.String(required=True)
    error = fields.String(
        allow_none=True, metadata={"description": "The full text, as the cloud answered it."}
    )
    reason = fields.String(
        allow_none=True,
        metadata={"description": "Why the run ended without an image, or waits again."},
    )


class AdminRunsResponse(ma.Schema):
    runs = fields.List(fields.Nested(AdminRunOut), required=True)
    runs_links = fields.List(fields.Nested(Link))


class AdminRunsArgs(RunPageArgs):
    state = fields.String(
        load_default=None,
        validate=validate.OneOf(list(RUN_STATES)),
        metadata={"description": "Only runs in this state."},
    )


class RunsSummary(ma.Schema):
    by_state = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    in_flight = fields.Integer(required=True)
    inflight_cap = fields.Integer(required=True)
    oldest_waiting_s = fields.Float(
        allow_none=True, metadata={"description": "Age of the oldest run waiting to start."}
    )


class PlannedHour(ma.Schema):
    hour = fields.String(required=True)
    planned_in_flight = fields.Float(required=True)


class PlanOut(ma.Schema):
    hours = fields.List(fields.Nested(PlannedHour), required=True)
    planned_peak = fields.Float(required=True)
    inflight_cap = fields.Integer(required=True)
    lower_bound = fields.Float(required=True)
    lower_bound_explanation = fields.String(required=True)
    schedules = fields.Integer(required=True)


class RebalanceOut(ma.Schema):
    schedules = fields.Integer(required=True, metadata={"description": "Schedules re-planned."})
    moved = fields.Integer(required=True, metadata={"description": "Schedules given a new slot."})
    peak = fields.Float(required=True, metadata={"description": "Planned peak in flight."})
    lower_bound = fields.Float(required=True)
    lower_bound_explanation = fields.String(required=True)
    on_day_share = fields.Float(
        required=True, metadata={"description": "Share of weekly schedules on their day."}
    )
    cap = fields.Float(required=True, metadata={"description": "The cap it planned under."})


class RebalanceJobOut(ma.Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    state = fields.String(
        required=True,
        metadata={
            "enum": list(REBALANCE_STATES),
            "description": "`queued`, `running`, then `done` (with `summary`) or `failed` "
            "(with `error`).",
        },
    )
    requested_at = fields.String(required=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    attempts = fields.Integer(
        required=True, metadata={"description": "Starts; more than one after a lost worker."}
    )
    stage = fields.String(
        allow_none=True,
        metadata={
            "description": "What the planner is doing, from the start of its latest stage "
            "(running), or the last stage it reached (done or failed); null until it starts."
        },
    )
    summary = fields.Nested(RebalanceOut, allow_none=True)
    error = fields.String(allow_none=True)


class WebhookIn(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": "Where events are POSTed: http or https, on a host that resolves to "
            "public addresses only (loopback and private ones too where the operator allows "
            "them; link-local and metadata addresses never).",
            "format": "uri",
        },
    )
    secret = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=16, max=256),
        metadata={
            "description": "16 to 256 characters: the key of the `X-SI-Signature` header, "
            "`sha256=<hex HMAC-SHA256 of the body>`. Never answered back.",
            "writeOnly": True,
        },
    )


class WebhookRequest(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    webhook = fields.Nested(WebhookIn, required=True)


class WebhookOut(ma.Schema):
    url = fields.String(required=True, metadata={"description": "Where events are POSTed."})
    created_at = fields.String(required=True, metadata={"description": "When it was first set."})
    updated_at = fields.String(required=True, metadata={"description": "When it was last set."})


class WebhookResponse(ma.Schema):
    webhook = fields.Nested(
        WebhookOut,
        required=True,
        metadata={
            "description": "The tenant's webhook. Each run that ends is POSTed to it as a "
            "CloudEvents 1.0 structured JSON event (`run.succeeded`, `run.failed`), signed, and "
            "retried with back-off for 24 hours until a 2xx; redirects are not followed."
        },
    )


class DeliveryOut(ma.Schema):
    id = fields.Integer(required=True, metadata={"description": "The attempt's id (a marker)."})
    event_id = fields.String(
        required=True,
        metadata={"format": "uuid", "description": "The event's CloudEvents `id`."},
    )
    type = fields.String(
        required=True, metadata={"description": "The event's type, e.g. `run.succeeded`."}
    )
    time = fields.String(required=True, metadata={"description": "When the attempt was made."})
    status_code = fields.Integer(
        allow_none=True,
        metadata={"description": "What the receiver answered; null when nothing was answered."},
    )
    error = fields.String(
        allow_none=True,
        metadata={
            "description": "Why the attempt failed without an answer (timeout, refused "
            "address...); null when the receiver answered."
        },
    )
    attempts = fields.Integer(
        required=True, metadata={"description": "The event's attempts so far, this one included."}
    )
    delivered = fields.Boolean(required=True, metadata={"description": "Answered with a 2xx."})


class DeliveryPageArgs(RunPageArgs):
    limit = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Attempts per page, 1 to 1000."},
    )
    marker = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=2**62),
        metadata={"description": "The id of the last attempt of the previous page."},
    )


class DeliveriesResponse(ma.Schema):
    deliveries = fields.List(
        fields.Nested(DeliveryOut),
        required=True,
        metadata={"description": "The tenant's delivery attempts, newest first."},
    )
    deliveries_links = fields.List(fields.Nested(Link))
