"""What every tenant endpoint does first: authorize the caller for the path's tenant, tag
the request's logs, and look up the path's server in the cloud."""

from __future__ import annotations

from typing import NoReturn

from flask import current_app, request

from api.auth import authorize_tenant
from api.context import cloud
from api.errors import abort, unavailable
from common.compute.base import ComputeError, Server, ServerNotFound
from common.logging import bind


def authorize_request() -> None:
    """A blueprint's before_request: the API.md rules for the tenant in the path."""
    args = request.view_args or {}
    authorize_tenant(args.get("tenant_id", ""), write=request.method not in ("GET", "HEAD"))
    bind(tenant_id=args.get("tenant_id"), server_id=args.get("server_id"))


def instance_not_found(server_id: str) -> NoReturn:
    abort(404, f"Specified instance {server_id} could not be found.")


def lookup_server(tenant_id: str, server_id: str) -> Server:
    """The tenant's server, or the 404 that a missing server and another tenant's share."""
    try:
        return cloud().get_server(tenant_id, server_id)
    except ServerNotFound:
        instance_not_found(server_id)
    except ComputeError:
        current_app.logger.warning("compute API failed while looking up a server", exc_info=True)
        unavailable("The compute API")


def no_schedule(tenant_id: str, server_id: str) -> NoReturn:
    """404 for a missing schedule, saying whether the server itself is missing."""
    lookup_server(tenant_id, server_id)
    abort(404, f"Image schedule does not exist for server {server_id}")
