"""Who a caller is, and what every authentication backend answers: the one interface."""

from __future__ import annotations

import dataclasses
from typing import Protocol

#: The service's roles (API.md): observer reads, creator also writes, admin is the operator.
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
    """Turns a token into an identity, None for a token it does not know."""

    def authenticate(self, token: str) -> Identity | None: ...

    def known(self, token: str) -> Identity | None:
        """The token's identity when the backend has it at hand (its file, its cache of
        accepted tokens) and need ask nobody; None otherwise. Never raises."""
        ...
