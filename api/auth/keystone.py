"""The keystone authentication backend: user tokens checked against Keystone v3, briefly cached."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
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
# Entries of accepted tokens, and as many of refused ones: enough for every active user of a
# busy API, and a bound on what a flood of made-up tokens can make the process hold.
MAX_CACHE_ENTRIES = 10_000
# Renew the service token this long before Keystone says it expires, so no validation is
# sent with a token that dies in flight.
SERVICE_TOKEN_MARGIN_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class _Entry:
    identity: Identity | None
    cached_until: float
    token_expires_at: float


class _RecentEntries:
    """At most `size` entries, the least recently used going first; an entry past its
    `cached_until` is gone."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: collections.OrderedDict[bytes, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry.cached_until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: bytes, entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


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
        operator_projects: Iterable[str] = (),
        cache_entries: int = MAX_CACHE_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = _v3_url(auth_url)
        self._operator_projects = frozenset(operator_projects)
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
        # Apart, so that a flood of made-up tokens evicts only other refusals, never the
        # entries of tokens that work.
        self._accepted = _RecentEntries(cache_entries)
        self._refused = _RecentEntries(cache_entries)
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
        key = _cache_key(token)
        now = self._clock()
        entry = self._accepted.get(key, now) or self._refused.get(key, now)
        if entry is not None:
            # Expired while cached: never accepted, and Keystone need not be asked.
            return entry.identity if entry.token_expires_at > now else None
        identity, expires_at = self._validate(token)
        now = self._clock()
        if identity is not None and expires_at > now:
            # A positive entry may outlive its token: a hit checks the expiry above.
            self._accepted.put(key, _Entry(identity, now + self._cache_seconds, expires_at))
            return identity
        ttl = min(self._cache_seconds, NEGATIVE_CACHE_SECONDS)
        self._refused.put(key, _Entry(None, now + ttl, 0.0))
        return None

    def known(self, token: str) -> Identity | None:
        """The identity of a token Keystone accepted within the cache's time, still unexpired;
        None for any other, without asking Keystone."""
        if not token:
            return None
        now = self._clock()
        entry = self._accepted.get(_cache_key(token), now)
        return entry.identity if entry is not None and entry.token_expires_at > now else None

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
        return _identity(body, self._operator_projects), _timestamp(body.get("expires_at"))

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


def _cache_key(token: str) -> bytes:
    # A digest, so that the process does not hold live tokens as keys.
    return hashlib.sha256(token.encode()).digest()


def _identity(body: dict[str, Any], operator_projects: frozenset[str]) -> Identity | None:
    """The identity a validated token gives (API.md): its project is its tenant, and the role
    admin makes an operator only on an operator project or a system-scoped token; elsewhere
    it is an ordinary creator of its own project, so a customer who administers their own
    project gains nothing over other tenants."""
    roles = map_roles([str(r.get("name", "")) for r in body.get("roles") or []])
    project = body.get("project") or {}
    if (body.get("system") or {}).get("all") is True:
        # A system-scoped token names no tenant: it is an operator's or nobody's.
        return Identity(tenant_id="", roles=roles) if "admin" in roles else None
    if not project.get("id"):
        # Unscoped and domain-scoped tokens name no tenant.
        return None
    tenant_id = str(project["id"])
    if tenant_id not in operator_projects:
        roles -= {"admin"}
    if not roles:
        return None
    return Identity(tenant_id=tenant_id, roles=roles)


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
