"""The tenant API's runs (extension): a server's history, and running its schedule now."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import now, sessions
from api.pagination import last, page
from api.schemas import RunPageArgs, RunResponse, RunsResponse
from api.tenancy import authorize_request, lookup_server, no_schedule
from common import runs
from common.db import transaction
from common.models import Run

blp = Blueprint(
    "runs",
    __name__,
    url_prefix="/v2/<tenant_id>/servers/<server_id>/rax-si-image-schedule",
    description="A server's scheduled runs (extension).",
)


def run_body(run: Run) -> dict:
    return runs.public_fields(run)


blp.before_request(authorize_request)


@blp.route("/runs")
class ServerRuns(MethodView):
    @blp.arguments(RunPageArgs, location="query")
    @blp.response(200, RunsResponse)
    def get(self, args: dict, tenant_id: str, server_id: str) -> dict:
        """The server's recent runs, newest first."""
        with sessions()() as session:
            rows = runs.server_runs(session, tenant_id, server_id, args["limit"], args["marker"])
        if not rows and args["marker"] is None:
            lookup_server(tenant_id, server_id)
        return page("runs", [run_body(r) for r in rows], args["limit"], last(rows, "id"))

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
        return {"run": run_body(run)}
