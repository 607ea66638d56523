"""Authentication: a token becomes a tenant and roles, by one of two backends.

`identity` is the interface every backend answers to; `static` (a tokens file) and
`keystone` (Keystone v3) implement it without knowing each other; `rules` applies API.md's
request rules to whichever backend the settings choose.
"""

from __future__ import annotations

from api.auth.identity import ROLES, AuthBackend, AuthBackendUnavailable, Identity
from api.auth.keystone import KeystoneAuth
from api.auth.rules import authorize_admin, authorize_tenant, current_identity, known_identity
from api.auth.static import StaticTokens, add_token
from common.settings import Settings

__all__ = [
    "ROLES",
    "AuthBackend",
    "AuthBackendUnavailable",
    "Identity",
    "add_token",
    "authorize_admin",
    "authorize_tenant",
    "current_identity",
    "known_identity",
    "make_auth_backend",
]


def make_auth_backend(settings: Settings) -> AuthBackend:
    """The backend AUTH_BACKEND names."""
    if settings.auth_backend == "keystone":
        return KeystoneAuth(
            **settings.openstack_credentials(),
            cache_seconds=settings.auth_cache_s,
            operator_projects=settings.admin_project_ids,
        )
    return StaticTokens(settings.auth_tokens_file)
