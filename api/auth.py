"""Authentication: a token becomes a tenant and roles; the request rules of API.md."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from flask import current_app, g, request

from api.errors import abort, unavailable
from common.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLES = frozenset({"observer", "creator", "admin"})


@dataclasses.dataclass(frozen=True)
class Identity:
    tenant_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def may_write(self) -> bool:
        return bool(self.roles & {"creator", "admin"})


class AuthBackendUnavailable(Exception):
    """The token could not be checked (identity service down): answer 503, not 401."""


class AuthBackend(Protocol):
    def authenticate(self, token: str) -> Identity | None: ...


class StaticTokens:
    """Tokens from a JSON file: {"<token>": {"tenant": "...", "roles": ["creator"]}}.

    The file is re-read when it changes, so tokens can be added without a restart.
    """

    # A stat() of the file on every request is a system call on the hot path for a file that
    # rarely changes: a known token looks at it at most this often, so a removed token stops
    # working within a second. An unknown token looks at once, so a new one works at once.
    RECHECK_S = 1.0

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, Identity] = {}
        self._next_check = 0.0

    def authenticate(self, token: str) -> Identity | None:
        identity = self._tokens.get(token)
        if identity is None or time.monotonic() >= self._next_check:
            self._reload_if_changed()
            identity = self._tokens.get(token)
        return identity

    def _reload_if_changed(self) -> None:
        self._next_check = time.monotonic() + self.RECHECK_S
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            self._tokens, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            self._tokens = load_tokens(self._path)
            self._stamp = stamp


def load_tokens(path: Path) -> dict[str, Identity]:
    raw = json.loads(path.read_text() or "{}")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping tokens to identities")
    tokens = {}
    for token, entry in raw.items():
        roles = frozenset(entry.get("roles", [])) & ROLES
        if "admin" in roles:
            roles |= {"creator", "observer"}
        if "creator" in roles:
            roles |= {"observer"}
        tokens[token] = Identity(str(entry["tenant"]), roles)
    return tokens


def add_token(path: Path, token: str, tenant_id: str, roles: list[str]) -> None:
    """Write a token into the static tokens file (used by `make run` and the tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = json.loads(path.read_text()) if path.exists() else {}
    tokens[token] = {"tenant": tenant_id, "roles": roles}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tokens, indent=2))
    tmp.replace(path)


def make_auth_backend(settings: Settings) -> AuthBackend:
    if settings.auth_backend == "keystone":
        from api.keystone_auth import KeystoneAuth

        return KeystoneAuth(**settings.openstack_credentials(), cache_seconds=settings.auth_cache_s)
    return StaticTokens(settings.auth_tokens_file)


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
