"""The tenant API's webhook (extension): where the tenant's events go, and their deliveries."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import now, read_sessions, resolver, sessions, settings
from api.errors import abort
from api.pagination import last, page
from api.schemas import DeliveriesResponse, DeliveryPageArgs, WebhookRequest, WebhookResponse
from api.tenancy import authorize_request
from common import outbox
from common.clock import iso_z
from common.db import read, transaction
from common.destinations import RefusedDestination, check_destination
from common.models import Webhook, WebhookAttempt

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/v2/<tenant_id>/rax-si-webhook",
    description="The tenant's webhook and its deliveries (extension).",
)
blp.before_request(authorize_request)


def _webhook_body(hook: Webhook) -> dict:
    # The secret is never answered: it is the key of every signature.
    return {
        "webhook": {
            "url": hook.url,
            "created_at": iso_z(hook.created_at),
            "updated_at": iso_z(hook.updated_at),
        }
    }


def _delivery_body(attempt: WebhookAttempt) -> dict:
    return {
        "id": attempt.id,
        "event_id": str(attempt.event_id),
        "type": attempt.type,
        "time": iso_z(attempt.attempted_at),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "attempts": attempt.attempt,
        "delivered": outbox.Result(attempt.status_code).delivered,
    }


@blp.route("")
class TenantWebhook(MethodView):
    @blp.response(200, WebhookResponse)
    def get(self, tenant_id: str) -> dict:
        """The tenant's webhook, without its secret."""
        hook = read(read_sessions(), lambda s: s.get(Webhook, tenant_id))
        if hook is None:
            abort(404, f"Webhook does not exist for tenant {tenant_id}")
        return _webhook_body(hook)

    @blp.arguments(WebhookRequest)
    @blp.response(200, WebhookResponse)
    def put(self, body: dict, tenant_id: str) -> dict:
        """Set the tenant's webhook: its URL and the secret that signs each event."""
        wanted = body["webhook"]
        try:
            check_destination(wanted["url"], settings().webhook_allow_private, resolver())
        except RefusedDestination as refused:
            abort(400, f"webhook.url: {refused}")
        with transaction(sessions()) as session:
            hook = outbox.put_webhook(session, tenant_id, wanted["url"], wanted["secret"], now())
        return _webhook_body(hook)

    @blp.response(202)
    def delete(self, tenant_id: str) -> Response:
        """Remove the tenant's webhook; events not yet delivered are given up."""
        with transaction(sessions()) as session:
            outbox.delete_webhook(session, tenant_id, now())
        return Response(status=202)


@blp.route("/deliveries")
class WebhookDeliveries(MethodView):
    @blp.arguments(DeliveryPageArgs, location="query")
    @blp.response(200, DeliveriesResponse)
    def get(self, args: dict, tenant_id: str) -> dict:
        """The tenant's delivery attempts, newest first: each event's every try."""
        rows = read(
            read_sessions(),
            lambda s: outbox.attempts_of(s, tenant_id, args["limit"], args["marker"]),
        )
        return page(
            "deliveries", [_delivery_body(a) for a in rows], args["limit"], last(rows, "id")
        )
