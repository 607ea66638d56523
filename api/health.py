"""Liveness, readiness and metrics: the unauthenticated endpoints operators probe."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.context import sessions
from api.errors import RETRY_AFTER_S

blp = Blueprint("health", __name__, description="Probes and metrics.")


@blp.route("/healthz")
class Health(MethodView):
    def get(self) -> dict:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    def get(self) -> tuple[dict, int, dict]:
        """The database and the broker answer."""
        checks = {"database": _database_ok(), "broker": _broker_ok()}
        ready = all(checks.values())
        headers = {} if ready else {"Retry-After": str(RETRY_AFTER_S)}
        status = "ready" if ready else "unavailable"
        return {"status": status, "checks": checks}, 200 if ready else 503, headers


@blp.route("/metrics")
class Metrics(MethodView):
    def get(self) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def _database_ok() -> bool:
    try:
        with sessions()() as session:
            session.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        current_app.logger.warning("readiness: database unreachable", exc_info=True)
        return False


def _broker_ok() -> bool:
    url = current_app.extensions["settings"].broker_url
    if not url:
        return True
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return bool(client.ping())
    except Exception:
        current_app.logger.warning("readiness: broker unreachable", exc_info=True)
        return False
