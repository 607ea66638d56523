"""The static authentication backend: tokens from a JSON file the operator keeps."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from api.auth.identity import ROLES, Identity
from common.secret_files import write_private


class StaticTokens:
    """Tokens from a JSON file: {"<token>": {"tenant": "...", "roles": ["creator"]}}.

    The file is re-read when it changes, so tokens can be added without a restart.
    """

    # A stat() of the file on every request is a system call on the hot path for a file that
    # rarely changes: a known token looks at it at most this often, so a removed token stops
    # working within a second. An unknown token looks at once, so a new one works at once.
    RECHECK_S = 1.0

    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, Identity] = {}
        self._next_check = 0.0

    def authenticate(self, token: str) -> Identity | None:
        identity = self._tokens.get(token)
        if identity is None or self._monotonic() >= self._next_check:
            self._reload_if_changed()
            identity = self._tokens.get(token)
        return identity

    def known(self, token: str) -> Identity | None:
        # The file is at hand: nobody else is ever asked.
        return self.authenticate(token)

    def _reload_if_changed(self) -> None:
        self._next_check = self._monotonic() + self.RECHECK_S
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
    """Write a token into the static tokens file, which only its owner can read."""
    add_tokens(path, {token: (tenant_id, roles)})


def add_tokens(path: Path, entries: Mapping[str, tuple[str, list[str]]]) -> None:
    """Write tokens (token: (tenant, roles)) into the static tokens file in one write."""
    tokens = json.loads(path.read_text()) if path.exists() else {}
    tokens.update({t: {"tenant": tenant, "roles": roles} for t, (tenant, roles) in entries.items()})
    write_private(path, json.dumps(tokens, indent=2))


def remove_tokens(path: Path, tokens: Iterable[str]) -> None:
    """Take these tokens out of the static tokens file, if it has any of them."""
    if not path.exists():
        return
    stored = json.loads(path.read_text() or "{}")
    kept = {token: entry for token, entry in stored.items() if token not in set(tokens)}
    if len(kept) != len(stored):
        write_private(path, json.dumps(kept, indent=2))
