"""What every service of the stand-in shares on the wire: the record, faults, errors, callers."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import flask

from tests.standins.openstack_cloud.model import RecordedRequest, Token

if TYPE_CHECKING:
    from tests.standins.openstack_cloud.cloud import OpenStackCloud

# The key of the app's extensions under which the cloud it serves is kept.
EXTENSION = "openstack_standin"
SERVICES = {"identity": "keystone", "compute": "nova", "image": "glance"}
DISCOVERY_PATHS = frozenset(
    {"", "/identity", "/identity/v3", "/compute", "/compute/v2.1", "/image", "/image/v2"}
)
UNAUTHENTICATED = "The request you have made requires authentication."

P = ParamSpec("P")


def current_cloud() -> OpenStackCloud:
    return flask.current_app.extensions[EXTENSION]


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_of(path: str) -> str:
    return SERVICES.get(path.strip("/").split("/", 1)[0], "")


def is_discovery(path: str) -> bool:
    return path.rstrip("/") in DISCOVERY_PATHS


def record_and_fault() -> flask.Response | None:
    """Runs before every request, routed or not, so tests count all that reached the wire."""
    path = flask.request.path
    service = service_of(path)
    cloud = current_cloud()
    fault = cloud.record(
        RecordedRequest(
            service,
            flask.request.method,
            path,
            dict(flask.request.args),
            is_discovery(path),
            dict(flask.request.headers),
        )
    )
    if fault is None:
        return None
    if fault.hang:
        cloud.hang()
        if fault.status is None:
            return error(service, 504, "The stand-in hung on purpose")
    assert fault.status is not None
    return error(service, fault.status, f"Fault switched on in the stand-in ({service})")


def error(service: str, status: int, message: str) -> flask.Response:
    """An error in the body each service really answers with, which clients parse."""
    if service == "nova":
        key = {
            400: "badRequest",
            403: "forbidden",
            404: "itemNotFound",
            409: "conflictingRequest",
        }.get(status, "computeFault")
        body: dict[str, Any] = {key: {"code": status, "message": message}}
    elif service == "glance":
        body = {"code": status, "title": str(status), "message": message}
    else:
        body = {"error": {"code": status, "title": str(status), "message": message}}
    return flask.make_response(flask.jsonify(body), status)


def authenticated(
    service: str,
) -> Callable[[Callable[Concatenate[Token, P], flask.Response]], Callable[P, flask.Response]]:
    """Passes the view the caller's token; without a valid X-Auth-Token `service` answers 401."""

    def decorate(
        view: Callable[Concatenate[Token, P], flask.Response],
    ) -> Callable[P, flask.Response]:
        @functools.wraps(view)
        def checked(*args: P.args, **kwargs: P.kwargs) -> flask.Response:
            token = current_cloud().valid_token(flask.request.headers.get("X-Auth-Token"))
            if token is None:
                return error(service, 401, UNAUTHENTICATED)
            return view(token, *args, **kwargs)

        return checked

    return decorate


def is_admin(token: Token) -> bool:
    return "admin" in token.roles
