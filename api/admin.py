"""The operator API (extension), role admin: the in-flight cap, the runs by state, the planned
load for the coming week and rebalancing."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import authorize_admin
from api.context import now, sessions, settings
from api.pagination import last, page
from api.runs import run_body
from api.schemas import (
    AdminRunsArgs,
    AdminRunsResponse,
    CapIn,
    CapOut,
    PlanOut,
    RebalanceOut,
    RunsSummary,
)
from common.db import transaction
from common.models import PENDING, RUN_STATES, Run
from common.runtime_settings import inflight_cap, set_inflight_cap
from scheduler.admission import in_flight_count
from scheduler.fleet_plan import planned_week, rebalance_fleet

blp = Blueprint("admin", __name__, url_prefix="/admin/v1", description="Operators only.")


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
        items = [{"tenant_id": r.tenant_id, "server_id": r.server_id, **run_body(r)} for r in rows]
        return page("runs", items, args["limit"], last(rows, "id"))


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
                sa.select(sa.func.min(Run.not_before)).where(Run.state == PENDING)
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


@blp.route("/plan/rebalance")
class Rebalance(MethodView):
    @blp.response(200, RebalanceOut)
    def post(self) -> dict:
        """Re-plan every schedule under the current cap; says how many moved."""
        with transaction(sessions()) as session:
            cap = inflight_cap(session, settings().inflight_cap)
            summary = rebalance_fleet(session, cap, now())
        current_app.logger.info("rebalanced", extra=summary.as_dict())
        return summary.as_dict()
