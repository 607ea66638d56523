"""The tenant API: a server's image schedule (compatible) and the tenant's list (extension)."""

from __future__ import annotations

from flask import Response, current_app, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import authorize_tenant
from api.context import cloud, now, sessions, settings
from api.errors import abort, unavailable
from api.schemas import PageArgs, ScheduleListResponse, ScheduleRequest, ScheduleResponse
from common import schedules
from common.clock import iso_z
from common.compute.base import ComputeError, Server, ServerNotFound
from common.db import transaction
from common.logging import bind
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
            "next_run_at": iso_z(row.next_run_at),
        }
    }


def _instance_not_found(server_id: str) -> None:
    abort(404, f"Specified instance {server_id} could not be found.")


def _no_schedule(tenant_id: str, server_id: str) -> None:
    """404 for a missing schedule, saying whether the server itself is missing.

    A server of another tenant gets the same answer as one that does not exist.
    """
    _server(tenant_id, server_id)
    abort(404, f"Image schedule does not exist for server {server_id}")


def _server(tenant_id: str, server_id: str) -> Server:
    try:
        return cloud().get_server(tenant_id, server_id)
    except ServerNotFound:
        _instance_not_found(server_id)
    except ComputeError:
        current_app.logger.warning("compute API failed while looking up a server", exc_info=True)
        unavailable("The compute API")


@blp.before_request
def _authorize() -> None:
    args = request.view_args or {}
    authorize_tenant(args.get("tenant_id", ""), write=request.method not in ("GET", "HEAD"))
    bind(tenant_id=args.get("tenant_id"), server_id=args.get("server_id"))


@blp.route("/servers/<server_id>/rax-si-image-schedule")
class ServerSchedule(MethodView):
    @blp.response(200, ScheduleResponse)
    def get(self, tenant_id: str, server_id: str) -> dict:
        """The server's schedule and its next planned run."""
        with sessions()() as session:
            row = schedules.find(session, tenant_id, server_id)
        if row is None:
            _no_schedule(tenant_id, server_id)
        return _schedule_body(schedules.view(row))

    @blp.arguments(ScheduleRequest)
    @blp.response(200, ScheduleResponse)
    def post(self, body: dict, tenant_id: str, server_id: str) -> dict:
        """Enable or replace the server's schedule: daily, or weekly on `day_of_week`."""
        wanted = body["image_schedule"]
        server = _server(tenant_id, server_id)
        with transaction(sessions()) as session:
            current = schedules.find(session, tenant_id, server_id)
            row = schedules.upsert(
                session,
                tenant_id=tenant_id,
                server_id=server_id,
                server_name=server.name,
                retention=wanted["retention"],
                day_of_week=wanted["day_of_week"],
                slot_s=choose_slot(current, wanted["day_of_week"], server_id),
                default_duration_s=settings().default_image_duration_s,
                now=now(),
            )
            stored = schedules.view(row)
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
            _no_schedule(tenant_id, server_id)
        current_app.logger.info("schedule removed")
        return Response(status=202)


@blp.route("/rax-si-image-schedules")
class TenantSchedules(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ScheduleListResponse)
    def get(self, args: dict, tenant_id: str) -> dict:
        """The tenant's schedules (extension), by server id, `limit` at a time."""
        with sessions()() as session:
            rows = schedules.page(session, tenant_id, args["limit"], args["marker"])
        items = [
            {"server_id": r.server_id, **_schedule_body(schedules.view(r))["image_schedule"]}
            for r in rows
        ]
        body: dict = {"image_schedules": items}
        if len(rows) == args["limit"]:
            href = url_for(
                ".TenantSchedules",
                tenant_id=tenant_id,
                limit=args["limit"],
                marker=rows[-1].server_id,
                _external=True,
            )
            body["image_schedules_links"] = [{"rel": "next", "href": href}]
        return body
