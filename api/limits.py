"""Rate limits (API.md "Limits"), counted in Redis so that every API process shares them.

Two limits, both Flask-Limiter's: a tenant's writes (POST, PUT, PATCH, DELETE under its own
path), and a client address's failed authentications, which bounds the Keystone validations
made-up tokens can cost. Over either: 429, `Retry-After` and the compatible `overLimit` body.

A request that cannot fail authentication (a probe, which needs no token, or a token the
backend already knows) is not held to the second: it has nothing to count, and reading the
count would cost every such request a round trip to Redis. A read of that kind meets no limit
at all, so the limiter is not consulted for it.
"""

from __future__ import annotations

import time

from flask import Flask, Response, request
from flask_limiter import Limiter, RequestLimit
from flask_smorest import Blueprint

from api.auth import known_identity
from api.errors import error_response
from common.settings import Settings

#: The methods that change something: the ones a tenant's write limit counts.
WRITES = ["POST", "PUT", "PATCH", "DELETE"]
#: Beside the broker's own keys in the same Redis.
KEY_PREFIX = "si-limits"
#: The blueprints whose endpoints need no token: they never answer 401.
NO_TOKEN_BLUEPRINTS = frozenset({"health"})


def storage_uri(broker_url: str) -> str:
    """The limits' storage: the broker's Redis, or this process's memory without a broker."""
    if not broker_url:
        return "memory://"
    # kombu's form of a Redis on a Unix socket (the embedded one) is redis+unix:// to limits.
    return broker_url.replace("redis+socket://", "redis+unix://", 1)


def client_address() -> str:
    return request.remote_addr or "unknown"


def tenant_of_request() -> str:
    return str((request.view_args or {}).get("tenant_id", ""))


def cannot_fail_authentication() -> bool:
    """True when the request cannot be answered 401, so the failure limit has nothing to count."""
    return request.blueprint in NO_TOKEN_BLUEPRINTS or known_identity() is not None


def unlimited_read() -> bool:
    """A request that no limit applies to: not a write, and unable to fail authentication."""
    return request.method not in WRITES and cannot_fail_authentication()


def over_limit(limit: RequestLimit) -> Response:
    """The compatible 429: `overLimit` with the seconds until the window lets a request in."""
    # reset_at is already rounded up to the whole second.
    wait = max(1, int(limit.reset_at - time.time()))
    response = error_response(
        429, f"Rate limit exceeded ({limit.limit}); retry in {wait} s", {"Retry-After": str(wait)}
    )
    body = response.get_json()
    body["overLimit"]["retryAfter"] = str(wait)
    response.set_data(response.json_module.dumps(body))
    return response


def install_limits(app: Flask, settings: Settings, tenant_blueprints: list[Blueprint]) -> Limiter:
    limiter = Limiter(
        key_func=client_address,
        app=app,
        storage_uri=storage_uri(settings.broker_url),
        key_prefix=KEY_PREFIX,
        strategy="moving-window",
        # Only answers of 401 count: the limit costs a client nothing until it guesses.
        default_limits=[settings.auth_failure_limit],
        default_limits_deduct_when=lambda response: response.status_code == 401,
        default_limits_exempt_when=cannot_fail_authentication,
        on_breach=over_limit,
        # Redis down: the limits fall back to this process's memory rather than refusing
        # every write; readiness already reports the broker.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.request_filter(unlimited_read)
    for blueprint in tenant_blueprints:
        limiter.limit(
            settings.tenant_write_limit,
            key_func=tenant_of_request,
            methods=WRITES,
            scope="tenant-writes",
            override_defaults=False,
            on_breach=over_limit,
        )(blueprint)
    return limiter
