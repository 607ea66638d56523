"""The tenant API: a server's image schedule (compatible), its pause and resume, and the
tenant's list (extensions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import orm

from api.context import now, planned_load, read_sessions, sessions, settings
from api.pagination import last, page
from api.schemas import (
    ErrorBody,
    ScheduleListArgs,
    ScheduleListResponse,
    ScheduleRequest,
    ScheduleResponse,
)
from api.tenancy import authorize_request, instance_not_found, lookup_server, no_schedule
from common import schedules
from common.clock import iso_z_or_none
from common.db import read, transaction
from common.models import Schedule
from scheduler.placement import choose_slot

blp = Blueprint(
    "schedules",
    __name__,
    url_prefix="/v2/<tenant_id>",
    description="Enable, read and disable a server's image schedule.",
)


def _schedule_body(row: schedules.ScheduleView) -> dict:
    return {
        "image_schedule": {
            "retention": row.retention,
            "day_of_week": row.day_of_week,
            "next_run_at": iso_z_or_none(row.next_run_at),
            "paused": row.paused,
            "last_success_at": iso_z_or_none(row.last_success_at),
            "stale": row.stale,
        }
    }


blp.before_request(authorize_request)

#: The 404 of pause and resume: one answer for a foreign server and a missing one (API.md).
NOT_FOUND = "No schedule on the server, or no such server of the tenant's."


@blp.route("/servers/<server_id>/rax-si-image-schedule")
class ServerSchedule(MethodView):
    @blp.response(200, ScheduleResponse)
    def get(self, tenant_id: str, server_id: str) -> dict:
        """The server's schedule and its next planned run."""
        stored = schedules.read_view(read_sessions(), tenant_id, server_id, now())
        if stored is None:
            no_schedule(tenant_id, server_id)
        return _schedule_body(stored)

    # An instance, not the class: webargs would build a schema from a class on every request.
    @blp.arguments(ScheduleRequest())
    @blp.response(200, ScheduleResponse)
    def post(self, body: dict, tenant_id: str, server_id: str) -> dict:
        """Enable or replace the server's schedule: daily, or weekly on `day_of_week`."""
        wanted = body["image_schedule"]
        server = lookup_server(tenant_id, server_id)
        # No transaction: the reads take no lock (a racing POST is an update either way), and
        # the store is one statement, whole by itself, that is safe to repeat.
        current = schedules.read_placed(read_sessions(), tenant_id, server_id)
        slot_s = choose_slot(
            planned_load(),
            read_sessions(),
            current,
            wanted["day_of_week"],
            tenant_id,
            settings().inflight_cap,
            settings().default_image_duration_s,
        )
        stored = schedules.store(
            read_sessions(),
            tenant_id=tenant_id,
            server_id=server_id,
            server_name=server.name,
            retention=wanted["retention"],
            day_of_week=wanted["day_of_week"],
            slot_s=slot_s,
            default_duration_s=settings().default_image_duration_s,
            now=now(),
        )
        if stored is None:
            # The server id is another tenant's: the cloud said otherwise a moment ago.
            instance_not_found(server_id)
        current_app.logger.info(
            "schedule stored",
            extra={"retention": stored.retention, "day_of_week": stored.day_of_week},
        )
        return _schedule_body(stored)

    @blp.response(202)
    def delete(self, tenant_id: str, server_id: str) -> Response:
        """Disable the server's schedule; the images already made are kept."""
        with transaction(sessions()) as session:
            removed = schedules.remove(session, tenant_id, server_id)
        if not removed:
            no_schedule(tenant_id, server_id)
        current_app.logger.info("schedule removed")
        return Response(status=202)


#: schedules.pause or schedules.resume: the stored row, or None when there is no schedule.
Change = Callable[[orm.Session, str, str, dt.datetime], Schedule | None]


def _pause_or_resume(change: Change, tenant_id: str, server_id: str) -> dict:
    at = now()
    with transaction(sessions()) as session:
        row = change(session, tenant_id, server_id, at)
        stored = None if row is None else schedules.view(row, at)
    if stored is None:
        no_schedule(tenant_id, server_id)
    current_app.logger.info("schedule paused" if stored.paused else "schedule resumed")
    return _schedule_body(stored)


@blp.route("/servers/<server_id>/rax-si-image-schedule/pause")
class PauseSchedule(MethodView):
    @blp.response(200, ScheduleResponse)
    @blp.alt_response(404, schema=ErrorBody, description=NOT_FOUND)
    def post(self, tenant_id: str, server_id: str) -> dict:
        """Pause the schedule (extension): no scheduled image until it is resumed.

        Its settings are kept; run-now still works; scheduled runs still waiting are cancelled.
        A compatible POST of the schedule resumes it too. Pausing a paused one changes nothing.
        """
        return _pause_or_resume(schedules.pause, tenant_id, server_id)


@blp.route("/servers/<server_id>/rax-si-image-schedule/resume")
class ResumeSchedule(MethodView):
    @blp.response(200, ScheduleResponse)
    @blp.alt_response(404, schema=ErrorBody, description=NOT_FOUND)
    def post(self, tenant_id: str, server_id: str) -> dict:
        """Resume a paused schedule (extension) from its slot's next occurrence.

        The periods missed while paused are not made up. Resuming one that runs changes nothing.
        """
        return _pause_or_resume(schedules.resume, tenant_id, server_id)


@blp.route("/rax-si-image-schedules")
class TenantSchedules(MethodView):
    @blp.arguments(ScheduleListArgs, location="query")
    @blp.response(200, ScheduleListResponse)
    def get(self, args: dict, tenant_id: str) -> dict:
        """The tenant's schedules (extension), by server id, `limit` at a time.

        `stale=true` lists only the stale ones.
        """
        at = now()
        rows = read(
            read_sessions(),
            lambda s: schedules.page(
                s, tenant_id, args["limit"], args["marker"], stale=args["stale"], now=at
            ),
        )
        items = [
            {"server_id": r.server_id, **_schedule_body(schedules.view(r, at))["image_schedule"]}
            for r in rows
        ]
        return page("image_schedules", items, args["limit"], last(rows, "server_id"))
