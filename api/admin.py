"""The operator API (extension), role admin: the in-flight cap and the per-tenant ceiling on
places, the runs by state, the planned load for the coming week and rebalancing (as a job a
worker runs)."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from flask import current_app, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api import errors
from api.auth import authorize_admin
from api.context import now, publisher, sessions, settings
from api.pagination import last, page
from api.runs import run_body
from api.schemas import (
    AdminRunsArgs,
    AdminRunsResponse,
    CapIn,
    CapOut,
    ErrorBody,
    PlanOut,
    RebalanceJobOut,
    RunsSummary,
    TenantInflightMaxIn,
    TenantInflightMaxOut,
)
from common.clock import iso_z, iso_z_or_none
from common.db import transaction
from common.logging import bind
from common.models import Rebalance as RebalanceRow
from common.models import Run
from common.runs import RUN_STATES, RunState
from common.runtime_settings import (
    inflight_cap,
    set_inflight_cap,
    set_tenant_inflight_max,
    tenant_inflight_max,
)
from scheduler import rebalances
from scheduler.admission import in_flight, in_flight_count
from scheduler.fleet_plan import planned_week
from workers.publisher import send_rebalance

blp = Blueprint("admin", __name__, url_prefix="/admin/v1", description="Operators only.")
log = logging.getLogger("scheduled_images.api")


@blp.before_request
def _authorize() -> None:
    authorize_admin()


def _cap_body() -> dict:
    with sessions()() as session:
        return {
            "inflight_cap": inflight_cap(session, settings().inflight_cap),
            "in_flight": in_flight_count(session),
        }


@blp.route("/cap")
class Cap(MethodView):
    @blp.response(200, CapOut)
    def get(self) -> dict:
        """The in-flight cap and how many image creations are in flight now."""
        return _cap_body()

    @blp.arguments(CapIn)
    @blp.response(200, CapOut)
    def put(self, body: dict) -> dict:
        """Set the cap; workers read it at each admission, no restart needed."""
        with transaction(sessions()) as session:
            set_inflight_cap(session, body["inflight_cap"])
        current_app.logger.info("in-flight cap set", extra={"inflight_cap": body["inflight_cap"]})
        return _cap_body()


def _tenant_max_body() -> dict:
    with sessions()() as session:
        held = in_flight(session).held
        return {
            "tenant_inflight_max": tenant_inflight_max(session, settings().tenant_inflight_max),
            "inflight_cap": inflight_cap(session, settings().inflight_cap),
            "most_held": max(held.values(), default=0),
        }


@blp.route("/tenant-inflight-max")
class TenantInflightMax(MethodView):
    @blp.response(200, TenantInflightMaxOut)
    def get(self) -> dict:
        """The most places one tenant may hold (0: none but the cap), and the most one holds."""
        return _tenant_max_body()

    @blp.arguments(TenantInflightMaxIn)
    @blp.response(200, TenantInflightMaxOut)
    def put(self, body: dict) -> dict:
        """Set the per-tenant ceiling; workers read it at each admission, no restart needed.

        Places are shared by max-min fair share whatever the ceiling; the ceiling only stops
        one tenant from holding more, even while no other tenant waits. Lowering it takes
        no place back: a tenant above it gets no more until it is below.
        """
        ceiling = body["tenant_inflight_max"]
        with transaction(sessions()) as session:
            set_tenant_inflight_max(session, ceiling)
        current_app.logger.info("per-tenant ceiling set", extra={"tenant_inflight_max": ceiling})
        return _tenant_max_body()


@blp.route("/runs")
class Runs(MethodView):
    @blp.arguments(AdminRunsArgs, location="query")
    @blp.response(200, AdminRunsResponse)
    def get(self, args: dict) -> dict:
        """Runs of every tenant, newest first, optionally in one state."""
        query = sa.select(Run)
        if args["state"]:
            query = query.where(Run.state == args["state"])
        if args["marker"]:
            query = query.where(Run.id < args["marker"])
        with sessions()() as session:
            rows = list(session.scalars(query.order_by(Run.id.desc()).limit(args["limit"])))
        items = [_admin_run_body(r) for r in rows]
        return page("runs", items, args["limit"], last(rows, "id"))


def _admin_run_body(run: Run) -> dict:
    """A run as operators see it: whose it is, and the full error text with its reason."""
    body = {"tenant_id": run.tenant_id, "server_id": run.server_id, **run_body(run)}
    return {**body, "error": run.error, "reason": run.reason}


@blp.route("/runs/summary")
class Summary(MethodView):
    @blp.response(200, RunsSummary)
    def get(self) -> dict:
        """How many runs are in each state, in flight against the cap, and the oldest wait."""
        with sessions()() as session:
            counts = dict(
                session.execute(sa.select(Run.state, sa.func.count()).group_by(Run.state)).all()
            )
            oldest = session.scalar(
                sa.select(sa.func.min(Run.not_before)).where(Run.state == RunState.PENDING)
            )
        cap = _cap_body()
        waited = None if oldest is None else max((now() - oldest).total_seconds(), 0.0)
        return {
            "by_state": {state: counts.get(state, 0) for state in RUN_STATES},
            "in_flight": cap["in_flight"],
            "inflight_cap": cap["inflight_cap"],
            "oldest_waiting_s": waited,
        }


@blp.route("/plan")
class Plan(MethodView):
    @blp.response(200, PlanOut)
    def get(self) -> dict:
        """The planned number of images in flight per hour for the coming week (the highest
        minute of each hour), the planned peak against the cap, and the lower bound."""
        with sessions()() as session:
            week = planned_week(session, now())
            week["inflight_cap"] = inflight_cap(session, settings().inflight_cap)
        return week


def _job_body(job: RebalanceRow) -> dict:
    return {
        "id": str(job.id),
        "state": job.state,
        "requested_at": iso_z(job.requested_at),
        "started_at": iso_z_or_none(job.started_at),
        "finished_at": iso_z_or_none(job.finished_at),
        "attempts": job.attempts,
        "stage": job.stage,
        "summary": job.summary,
        "error": job.error,
    }


def _enqueue(job_id: uuid.UUID) -> None:
    """Send the job to the plan queue; on failure leave it to the tick, never fail the request.

    The job is committed already: a 5xx now would claim a change that was made.
    """
    sender = publisher()
    if sender is None:
        log.info("no broker configured for the API; the tick sends the rebalance")
        return
    try:
        send_rebalance(sender, str(job_id))
    except Exception:
        log.warning("broker unreachable; the tick sends the rebalance", exc_info=True)
        try:
            with transaction(sessions()) as session:
                rebalances.forget_publish(session, job_id)
        except sa.exc.SQLAlchemyError:
            # Its lease still runs out: the tick sends it then instead of at once.
            log.warning("could not mark the rebalance unsent", exc_info=True)


LOCATION = {"Location": {"description": "The job's address.", "schema": {"type": "string"}}}


@blp.route("/plan/rebalance")
class Rebalance(MethodView):
    @blp.response(202, RebalanceJobOut, headers=LOCATION)
    def post(self) -> tuple[dict, int, dict]:
        """Ask for a rebalance: a worker re-plans every schedule under the current cap.

        Answers at once with the job, `queued`, committed before the answer, and its address
        in `Location`; `GET /admin/v1/plan/rebalances/{job_id}` follows it to `done`, with the
        summary (how many moved, the planned peak, the cap), or `failed`, with the error.
        One rebalance runs at a time: while one is queued or running, asking again answers
        that job instead of starting another. A job asked for while the broker is down is
        kept, and sent when the broker is back.
        """
        with transaction(sessions()) as session:
            job, new = rebalances.request_rebalance(session, now(), settings().lease_s)
        bind(rebalance_id=job.id)
        if new:
            log.info("rebalance requested")
            _enqueue(job.id)
        else:
            log.info("rebalance already asked for; answering that job", extra={"state": job.state})
        location = url_for("admin.RebalanceJob", job_id=str(job.id))
        return _job_body(job), 202, {"Location": location}


@blp.route("/plan/rebalances/<job_id>")
class RebalanceJob(MethodView):
    @blp.response(200, RebalanceJobOut)
    @blp.alt_response(404, schema=ErrorBody, description="No rebalance job has this id.")
    def get(self, job_id: str) -> dict:
        """A rebalance job: its state, and its summary once done or its error once failed."""
        parsed = rebalances.parse_id(job_id)
        job = None
        if parsed is not None:
            with sessions()() as session:
                job = session.get(RebalanceRow, parsed)
        if job is None:
            errors.abort(404, f"Rebalance job {job_id[:64]!r} does not exist (ids are UUIDs).")
        return _job_body(job)
