"""The tenant API's retention explained (extension): what the next prune does with each image
of a server, and why. It deletes nothing."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import cloud, read_sessions
from api.errors import unavailable
from api.schemas import ImagesResponse
from api.tenancy import authorize_request, lookup_server, no_schedule
from common import runs, schedules
from common.compute.base import ComputeError, Image
from common.db import read
from common.images import Verdict, is_scheduled_image_of, retention_verdicts

blp = Blueprint(
    "images",
    __name__,
    url_prefix="/v2/<tenant_id>/servers/<server_id>/rax-si-image-schedule",
    description="Retention explained: a server's images and what the next prune does with "
    "each (extension).",
)

blp.before_request(authorize_request)


def verdict_body(verdict: Verdict) -> dict:
    image = verdict.image
    return {
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "created_at": image.created_at,
        "scheduled": verdict.scheduled,
        "fate": verdict.fate.value,
        "reason": verdict.reason.value,
    }


def _server_images(tenant_id: str, server_id: str) -> list[Image]:
    try:
        return cloud().list_server_images(tenant_id, server_id)
    except ComputeError:
        current_app.logger.warning("compute API failed while listing images", exc_info=True)
        unavailable("The compute API")


@blp.route("/images")
class ServerImages(MethodView):
    @blp.response(200, ImagesResponse)
    def get(self, tenant_id: str, server_id: str) -> dict:
        """Every image of the server, newest first: does the next prune keep or delete it?

        Each image is answered with a reason code. The prune decides with the same function,
        so this is what it will do; reading it deletes nothing.
        """
        schedule = read(read_sessions(), lambda s: schedules.find(s, tenant_id, server_id))
        if schedule is None:
            no_schedule(tenant_id, server_id)
        # The cloud has the last word: a server gone from it answers API.md's unknown-server
        # 404 even while its schedule waits out the grace period.
        lookup_server(tenant_id, server_id)
        images = _server_images(tenant_id, server_id)
        unmarked = [i.id for i in images if not is_scheduled_image_of(i, server_id)]
        recorded = read(
            read_sessions(),
            lambda s: runs.recorded_image_ids(s, tenant_id, server_id, unmarked),
        )
        verdicts = retention_verdicts(images, server_id, schedule.retention, recorded)
        return {"images": [verdict_body(v) for v in verdicts]}
