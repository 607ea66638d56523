"""The tenant API's runs (extension): a server's history, and running its schedule now."""

from __future__ import annotations

from collections.abc import Mapping

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import orm

from api.context import now, sessions, settings
from api.pagination import last, page
from api.schemas import RunPageArgs, RunResponse, RunsResponse
from api.tenancy import authorize_request, lookup_server, no_schedule
from common import runs
from common.clock import iso_z
from common.db import transaction
from common.models import Run
from common.runs import RunState
from common.runtime_settings import admission_limits
from scheduler.queue_forecast import Forecast, server_forecasts

blp = Blueprint(
    "runs",
    __name__,
    url_prefix="/v2/<tenant_id>/servers/<server_id>/rax-si-image-schedule",
    description="A server's scheduled runs (extension).",
)


def run_body(run: Run, forecasts: Mapping[int, Forecast] | None = None) -> dict:
    """A run as its tenant reads it; a waiting run also says where it stands in the queue."""
    ahead = (forecasts or {}).get(run.id)
    return {
        **runs.public_fields(run),
        "position": ahead.position if ahead else None,
        "estimated_start_at": iso_z(ahead.estimated_start_at) if ahead else None,
    }


def _forecasts(session: orm.Session, server_id: str) -> dict[int, Forecast]:
    config = settings()
    cap, ceiling = admission_limits(session, config.inflight_cap, config.tenant_inflight_max)
    return server_forecasts(session, server_id, now(), cap, ceiling)


blp.before_request(authorize_request)


@blp.route("/runs")
class ServerRuns(MethodView):
    @blp.arguments(RunPageArgs, location="query")
    @blp.response(200, RunsResponse)
    def get(self, args: dict, tenant_id: str, server_id: str) -> dict:
        """The server's recent runs, newest first."""
        with sessions()() as session:
            rows = runs.server_runs(session, tenant_id, server_id, args["limit"], args["marker"])
            waiting = any(r.state == RunState.PENDING for r in rows)
            forecasts = _forecasts(session, server_id) if waiting else {}
        if not rows and args["marker"] is None:
            lookup_server(tenant_id, server_id)
        bodies = [run_body(r, forecasts) for r in rows]
        return page("runs", bodies, args["limit"], last(rows, "id"))

    @blp.response(202, RunResponse)
    def post(self, tenant_id: str, server_id: str) -> dict:
        """Run the schedule now, once. It waits its turn under the cap like any run.

        Asking again while such a run has not finished answers that same run.
        """
        with transaction(sessions()) as session:
            try:
                run = runs.request_run(session, tenant_id, server_id, now())
            except runs.NoSchedule:
                run = None
        if run is None:
            no_schedule(tenant_id, server_id)
        with sessions()() as session:
            forecasts = _forecasts(session, server_id) if run.state == RunState.PENDING else {}
        return {"run": run_body(run, forecasts)}
