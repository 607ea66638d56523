"""The API: `create_app(settings)` builds a Flask app; nothing connects at import time."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable

from flask import Flask, g, request
from flask_smorest import Api, Blueprint
from prometheus_client import Counter, Histogram
from sqlalchemy import exc, orm
from werkzeug.exceptions import HTTPException

from api import docs, errors
from api.auth import AuthBackend, make_auth_backend
from api.limits import install_limits
from api.schemas import ErrorBody
from common.clock_store import SharedClock
from common.compute import make_driver
from common.compute.base import ComputeDriver
from common.db import is_outage, make_engine, make_read_session_factory, make_session_factory
from common.destinations import Resolver, resolve
from common.ids import is_uuid
from common.logging import clear
from common.settings import Settings
from scheduler.fleet_plan import PlannedLoad
from workers.publisher import make_publisher

MAX_BODY_BYTES = 64 * 1024
# Tenant ids are opaque (Keystone project ids, or the static tokens file's names), but a NUL
# or a control character names no tenant: refuse it early.
_TENANT_ID = re.compile(r"^[^\x00-\x1f\x7f/]{1,255}$")
# webargs answers 422 by default; the compatible API says 400. The parser is shared by every
# blueprint and read when a view declares its arguments, so it is set before the blueprints
# are imported (in create_app): then the document says 400 as well.
Blueprint.ARGUMENTS_PARSER.DEFAULT_VALIDATION_STATUS = 400

# The endpoints whose writes carry a JSON body: anything else is answered 415.
JSON_BODIES = frozenset({"schedules.ServerSchedule", "webhooks.TenantWebhook"})

REQUESTS = Counter(
    "si_api_requests_total", "API requests answered", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "si_api_request_seconds",
    "API request latency",
    ["method", "endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class ServiceApi(Api):
    """flask-smorest's Api, answering errors in the compatible body shape."""

    # Documents that shape too: flask-smorest's own error schema would be a lie to clients.
    ERROR_SCHEMA = ErrorBody

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        return errors.from_http_exception(error)


def create_app(
    settings: Settings,
    *,
    sessions: orm.sessionmaker[orm.Session] | None = None,
    compute: ComputeDriver | None = None,
    auth: AuthBackend | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    resolver: Resolver = resolve,
) -> Flask:
    app = Flask("scheduled_images")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Scheduled Images",
        API_VERSION="v2",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {
                    "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
                }
            },
            "security": [{"token": []}],
        },
    )
    if sessions is None:
        sessions = make_session_factory(make_engine(settings.database_url))
    app.extensions["settings"] = settings
    app.extensions["sessions"] = sessions
    app.extensions["read_sessions"] = make_read_session_factory(sessions)
    if clock is None:
        clock = SharedClock(sessions, settings.clock_speed)
    app.extensions["compute"] = compute or make_driver(settings, sessions, clock)
    app.extensions["auth"] = auth or make_auth_backend(settings)
    app.extensions["clock"] = clock
    app.extensions["resolver"] = resolver
    app.extensions["planned_load"] = PlannedLoad()
    # Without a broker (`scheduled-images api` alone) rebalance jobs wait for the tick to send them.
    app.extensions["publisher"] = (
        make_publisher(settings.broker_url) if settings.broker_url else None
    )

    api = ServiceApi(app)
    from api import admin, health, images, runs, schedules, webhooks

    app.register_blueprint(docs.assets)
    # Only blueprints with writes: images.blp only reads, so it has nothing to limit.
    install_limits(app, settings, [schedules.blp, runs.blp, webhooks.blp])
    for blueprint in (schedules.blp, runs.blp, images.blp, webhooks.blp, admin.blp, health.blp):
        api.register_blueprint(blueprint)
    _install_request_hooks(app)
    if settings.api_metrics_port:
        _serve_metrics_apart(app, str(settings.api_metrics_port))
    return app


def _serve_metrics_apart(app: Flask, metrics_port: str) -> None:
    """/metrics only on its own port, and nothing else there: the public port can then be
    published to tenants without the service's gauges, and the metrics port to Prometheus
    alone."""

    @app.before_request
    def _metrics_port_only_for_metrics() -> None:
        on_metrics_port = request.environ.get("SERVER_PORT") == metrics_port
        if on_metrics_port != (request.path == "/metrics"):
            errors.abort(404, f"Not found: {request.path}")


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _check_request() -> None:
        clear()
        g.started = time.perf_counter()
        arguments = request.view_args or {}
        tenant_id, server_id = arguments.get("tenant_id"), arguments.get("server_id")
        if tenant_id is not None and not _TENANT_ID.match(tenant_id):
            errors.abort(404, f"Specified tenant_id {tenant_id!r} is not valid.")
        if server_id is not None and not is_uuid(server_id):
            # What API.md answers for a server that does not exist, which this cannot be.
            errors.abort(404, f"Specified instance {server_id} could not be found.")
        if request.method in ("POST", "PUT", "PATCH") and request.content_length != 0:
            needs_json = request.endpoint in JSON_BODIES
            if needs_json and request.mimetype != "application/json":
                errors.abort(415, "Content-Type must be application/json")

    @app.after_request
    def _count(response):  # type: ignore[no-untyped-def]
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, endpoint, response.status_code).inc()
        if "started" in g:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - g.started)
        return response

    @app.errorhandler(exc.SQLAlchemyError)
    def _database_error(error: exc.SQLAlchemyError):  # type: ignore[no-untyped-def]
        if is_outage(error):
            app.logger.warning("database unreachable: %s", error.__class__.__name__)
            return errors.error_response(
                503,
                "The database is unavailable; retry later",
                {"Retry-After": str(errors.RETRY_AFTER_S)},
            )
        app.logger.exception("database error")
        return errors.error_response(500, "Internal error")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        if isinstance(error, HTTPException):
            return errors.from_http_exception(error)
        app.logger.exception("unexpected error")
        return errors.error_response(500, "Internal error")
