"""The static tokens file: re-read when it changes, looked at no more than once a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import static
from api.auth.static import StaticTokens, add_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_new_token_works_at_once(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "tenant-a", ["creator"])
    tokens = StaticTokens(path, clock)
    assert tokens.authenticate("alice") is not None
    add_token(path, "bob", "tenant-b", ["observer"])
    bob = tokens.authenticate("bob")
    assert bob is not None and bob.tenant_id == "tenant-b"


def test_a_known_token_looks_at_the_file_once_a_second(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "tenant-a", ["creator"])
    tokens = StaticTokens(path, clock)
    assert tokens.authenticate("alice") is not None
    looks = []
    real_stat = static.os.stat
    monkeypatch.setattr(static.os, "stat", lambda p: looks.append(p) or real_stat(p))
    for _ in range(100):
        assert tokens.authenticate("alice") is not None
    assert looks == []
    clock.now += StaticTokens.RECHECK_S
    assert tokens.authenticate("alice") is not None
    assert len(looks) == 1


def test_a_removed_token_stops_working_within_a_second(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "tenant-a", ["creator"])
    tokens = StaticTokens(path, clock)
    assert tokens.authenticate("alice") is not None
    path.write_text("{}")
    clock.now += StaticTokens.RECHECK_S
    assert tokens.authenticate("alice") is None


def test_every_token_in_the_file_is_known_without_asking_anyone(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "tenant-a", ["observer"])
    tokens = StaticTokens(path, clock)

    alice = tokens.known("alice")
    assert alice is not None and alice == tokens.authenticate("alice")
    assert tokens.known("made-up") is None
