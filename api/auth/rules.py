"""The request rules of API.md: a token in X-Auth-Token, a tenant's own data, writes by a
creator, the operator API by an admin."""

from __future__ import annotations

from flask import current_app, g, request

from api.auth.identity import AuthBackendUnavailable, Identity
from api.errors import abort, unavailable


def current_identity() -> Identity:
    """The caller, or a 401 answer; the result is kept for the rest of the request."""
    if "identity" in g:
        return g.identity
    token = request.headers.get("X-Auth-Token", "")
    if not token:
        abort(401, "Authentication required: send a token in X-Auth-Token")
    try:
        identity = current_app.extensions["auth"].authenticate(token)
    except AuthBackendUnavailable:
        unavailable("The identity service")
    if identity is None:
        abort(401, "The token is unknown or has expired")
    g.identity = identity
    return identity


def known_identity() -> Identity | None:
    """The caller when the backend knows the token without asking anyone, else None (no
    token, a token it would have to check, or a bad one); an identity is kept for the rest
    of the request, as current_identity keeps it."""
    if "identity" in g:
        return g.identity
    token = request.headers.get("X-Auth-Token", "")
    identity = current_app.extensions["auth"].known(token) if token else None
    if identity is not None:
        g.identity = identity
    return identity


def authorize_tenant(tenant_id: str, write: bool) -> Identity:
    """API.md's rules: own tenant only (admin any), and writing needs creator or admin."""
    identity = current_identity()
    if identity.tenant_id != tenant_id and not identity.is_admin:
        abort(403, f"The token does not grant access to tenant {tenant_id}")
    if write and not identity.may_write():
        abort(403, "The token's roles allow reading only")
    return identity


def authorize_admin() -> Identity:
    identity = current_identity()
    if not identity.is_admin:
        abort(403, "The operator API needs the admin role")
    return identity
