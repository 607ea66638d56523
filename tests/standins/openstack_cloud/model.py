"""What the stand-in cloud holds: projects, users, tokens, servers, images, faults, requests."""

from __future__ import annotations

import dataclasses
import time


class ManualClock:
    """A clock (Unix seconds) that moves only when told: pass it as `clock=` to step time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Project:
    id: str
    name: str


@dataclasses.dataclass
class User:
    id: str
    name: str
    password: str
    project_id: str
    roles: list[str]


@dataclasses.dataclass
class Token:
    value: str
    user_id: str
    project_id: str
    roles: list[str]
    issued_at: float
    expires_at: float
    #: Scoped to the whole deployment (Keystone's system scope) instead of a project.
    system: bool = False


@dataclasses.dataclass
class CloudServer:
    id: str
    project_id: str
    name: str
    disk_gb: int = 20
    # A task state set by the test (e.g. "resize_prep"); snapshots add their own on top.
    task_state: str | None = None
    created_at: float = 0.0


@dataclasses.dataclass
class CloudImage:
    id: str
    owner: str
    name: str
    created_at: float
    properties: dict[str, str]
    min_disk: int = 0
    visibility: str = "private"
    # Snapshot timeline: queued until queued_until, saving until done_at, then `outcome`.
    queued_until: float = 0.0
    done_at: float = 0.0
    outcome: str = "active"  # "active", "killed" or "never" (stays saving)
    status_override: str | None = None
    deleted: bool = False

    def status(self, now: float) -> str:
        if self.deleted:
            return "deleted"
        if self.status_override:
            return self.status_override
        if now < self.queued_until:
            return "queued"
        if now < self.done_at or self.outcome == "never":
            return "saving"
        return self.outcome


@dataclasses.dataclass
class Fault:
    """What a service answers instead of its normal response, for `remaining` requests."""

    service: str
    status: int | None = None
    hang: bool = False
    remaining: int | None = None  # None: until cleared
    method: str | None = None
    path_contains: str | None = None
    include_discovery: bool = False

    def answers(self, request: RecordedRequest) -> bool:
        return (
            self.service == request.service
            and (self.include_discovery or not request.discovery)
            and (self.method is None or self.method == request.method)
            and (self.path_contains is None or self.path_contains in request.path)
        )


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    service: str
    method: str
    path: str
    query: dict[str, str]
    discovery: bool
    headers: dict[str, str]
