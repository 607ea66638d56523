"""Liveness, readiness and metrics: the unauthenticated endpoints operators probe."""

from __future__ import annotations

import os

import marshmallow as ma
import sqlalchemy as sa
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from api.context import sessions
from api.errors import RETRY_AFTER_S
from common.metrics import multiprocess_registry, redis_client
from workers.metrics import ServiceCollector

blp = Blueprint("health", __name__, description="Probes and metrics.")
# Probes need no token: the document must not claim the API-wide X-Auth-Token requirement.
NO_TOKEN: list[dict] = []


class HealthOut(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.Equal("ok"))


class ReadyOut(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["ready", "unavailable"]))
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean(), required=True)


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=NO_TOKEN)
    @blp.response(200, HealthOut)
    def get(self) -> dict:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=NO_TOKEN)
    @blp.response(200, ReadyOut)
    @blp.alt_response(
        503, schema=ReadyOut, description="The database or the broker does not answer."
    )
    def get(self) -> tuple[dict, int, dict]:
        """The database and the broker answer."""
        checks = {"database": _database_ok(), "broker": _broker_ok()}
        ready = all(checks.values())
        headers = {} if ready else {"Retry-After": str(RETRY_AFTER_S)}
        status = "ready" if ready else "unavailable"
        return {"status": status, "checks": checks}, 200 if ready else 503, headers


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(security=NO_TOKEN)
    @blp.response(200, content_type="text/plain", description="Prometheus text format.")
    def get(self) -> Response:
        """Prometheus text format: this process's request metrics and the service's gauges."""
        registry = current_app.extensions.get("metrics_registry")
        if registry is None:
            # One collector per app, so its cache spans scrapes; built on first scrape.
            config = current_app.extensions["settings"]
            registry = CollectorRegistry(auto_describe=False)
            registry.register(
                ServiceCollector(
                    sessions(),
                    config.inflight_cap,
                    config.broker_url,
                    config.metrics_cache_s,
                    clock=current_app.extensions["clock"],
                )
            )
            current_app.extensions["metrics_registry"] = registry
        body = generate_latest(_request_metrics()) + generate_latest(registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _request_metrics() -> CollectorRegistry:
    """Under gunicorn, every worker's counts summed (multiprocess mode); else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return multiprocess_registry()
    return REGISTRY


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
        # kombu's `redis+socket://` form (the embedded Redis) is not one redis-py reads.
        return bool(redis_client(url).ping())
    except Exception:
        current_app.logger.warning("readiness: broker unreachable", exc_info=True)
        return False
