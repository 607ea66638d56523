"""The keystone authentication backend: user tokens checked against Keystone v3, briefly cached."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from api.auth.identity import AuthBackendUnavailable, Identity

# Keystone role names → the service's roles (API.md); any other role grants nothing.
ROLE_MAP: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "creator", "observer"}),
    "member": frozenset({"creator", "observer"}),
    "_member_": frozenset({"creator", "observer"}),
    "creator": frozenset({"creator", "observer"}),
    "reader": frozenset({"observer"}),
    "observer": frozenset({"observer"}),
}
# A token someone just got may be retried at once; do not remember a "no" for long.
NEGATIVE_CACHE_SECONDS = 5.0
# Enough for every active user of a busy API; a flood of made-up tokens only evicts the
# least recently used entries instead of growing the process.
MAX_CACHE_ENTRIES = 10_000
# Renew the service token this long before Keystone says it expires, so no validation is
# sent with a token that dies in flight.
SERVICE_TOKEN_MARGIN_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class _Entry:
    identity: Identity | None
    cached_until: float
    token_expires_at: float


def map_roles(keystone_roles: list[str]) -> frozenset[str]:
    """The service's roles for a set of Keystone role names (case-insensitive)."""
    roles: frozenset[str] = frozenset()
    for name in keystone_roles:
        roles |= ROLE_MAP.get(name.lower(), frozenset())
    return roles


class KeystoneAuth:
    """Validates user tokens with `GET /v3/auth/tokens`, using a service token of its own.

    A token of a project with none of the service's roles is refused like an unknown one:
    it grants nothing, reading included.
    """

    def __init__(
        self,
        auth_url: str,
        username: str,
        password: str,
        project_name: str,
        user_domain_name: str = "Default",
        project_domain_name: str = "Default",
        cache_seconds: float = 30.0,
        timeout: float = 5.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = _v3_url(auth_url)
        self._credentials = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": username,
                            "password": password,
                            "domain": {"name": user_domain_name},
                        }
                    },
                },
                "scope": {
                    "project": {"name": project_name, "domain": {"name": project_domain_name}}
                },
            }
        }
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._clock = clock
        self._http = requests.Session()
        self._cache: collections.OrderedDict[bytes, _Entry] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._service_lock = threading.Lock()
        self._service_token: str | None = None
        self._service_expires_at = 0.0

    def authenticate(self, token: str) -> Identity | None:
        """The token's tenant and roles, or None for a token Keystone does not accept.

        Raises AuthBackendUnavailable when Keystone cannot answer, so the caller can say
        503 (try again) instead of 401 (your token is bad).
        """
        if not token:
            return None
        # The cache is keyed by a digest so the process does not hold live tokens as keys.
        key = hashlib.sha256(token.encode()).digest()
        found, identity = self._cached(key)
        if found:
            return identity
        identity, expires_at = self._validate(token)
        now = self._clock()
        if expires_at <= now:
            identity = None
        # A positive entry may outlive its token: a hit checks the expiry and refuses it
        # without asking Keystone, since an expired token never becomes valid again.
        ttl = self._cache_seconds if identity else min(self._cache_seconds, NEGATIVE_CACHE_SECONDS)
        until = now + ttl
        with self._cache_lock:
            self._cache[key] = _Entry(identity, until, expires_at)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return identity

    def _cached(self, key: bytes) -> tuple[bool, Identity | None]:
        now = self._clock()
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None:
                return False, None
            if now >= entry.cached_until:
                del self._cache[key]
                return False, None
            self._cache.move_to_end(key)
        if entry.identity is not None and entry.token_expires_at <= now:
            # Expired while cached: never accepted, and Keystone need not be asked.
            return True, None
        return True, entry.identity

    def _validate(self, token: str) -> tuple[Identity | None, float]:
        """Ask Keystone; returns the identity (or None) and when the token expires."""
        service_token, fresh = self._get_service_token(renew=False)
        response = self._validation_request(service_token, token)
        if response.status_code == 401 and not fresh:
            # Our own token was revoked or expired early (Keystone restarted with new keys):
            # get another and ask once more before blaming the user's token.
            service_token, _ = self._get_service_token(renew=True)
            response = self._validation_request(service_token, token)
        if response.status_code in (401, 404):
            return None, 0.0
        if response.status_code != 200:
            # 403 means the service user may not validate tokens: a deployment problem, not
            # the caller's, so it is reported as the backend being unavailable too.
            raise AuthBackendUnavailable(
                f"Keystone answered {response.status_code} to a token validation"
            )
        try:
            body = response.json()["token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthBackendUnavailable("Keystone sent a token body that is not JSON") from exc
        return _identity(body), _timestamp(body.get("expires_at"))

    def _validation_request(self, service_token: str, token: str) -> requests.Response:
        return self._send(
            "GET",
            "/auth/tokens",
            params={"nocatalog": "1"},
            headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
        )

    def _get_service_token(self, renew: bool) -> tuple[str, bool]:
        """Our own token, and whether it was obtained just now."""
        with self._service_lock:
            now = self._clock()
            if (
                not renew
                and self._service_token is not None
                and now < self._service_expires_at - SERVICE_TOKEN_MARGIN_SECONDS
            ):
                return self._service_token, False
            response = self._send(
                "POST", "/auth/tokens", params={"nocatalog": "1"}, json=self._credentials
            )
            if response.status_code != 201 or not response.headers.get("X-Subject-Token"):
                # Wrong service credentials are the operator's to fix; users get a 503,
                # not a 401 that would tell them their own token is bad.
                raise AuthBackendUnavailable(
                    f"Keystone refused the service credentials ({response.status_code})"
                )
            try:
                expires_at = _timestamp(response.json()["token"]["expires_at"])
            except (ValueError, KeyError, TypeError):
                expires_at = now + 2 * SERVICE_TOKEN_MARGIN_SECONDS
            self._service_token = response.headers["X-Subject-Token"]
            self._service_expires_at = expires_at
            return self._service_token, True

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._http.request(method, self._url + path, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise AuthBackendUnavailable(f"Keystone at {self._url} did not answer: {exc}") from exc


def _identity(body: dict[str, Any]) -> Identity | None:
    project = body.get("project") or {}
    if not project.get("id"):
        # Unscoped and domain-scoped tokens name no tenant.
        return None
    roles = map_roles([str(r.get("name", "")) for r in body.get("roles") or []])
    if not roles:
        return None
    return Identity(tenant_id=str(project["id"]), roles=roles)


def _timestamp(value: Any) -> float:
    """Keystone's expires_at as a Unix time; unreadable counts as already expired."""
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _v3_url(auth_url: str) -> str:
    # Accept both forms operators paste: the Keystone root or its /v3 endpoint.
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"
