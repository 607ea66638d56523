"""The stand-in cloud itself: its state, the test's controls over it, and its HTTP server."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.standins.openstack_cloud import glance, nova
from tests.standins.openstack_cloud.app import make_app
from tests.standins.openstack_cloud.model import (
    CloudImage,
    CloudServer,
    Fault,
    Project,
    RecordedRequest,
    Token,
    User,
)

ADMIN_USER = "si-admin"
ADMIN_PASSWORD = "si-admin-secret"
ADMIN_PROJECT = "service"


class _QuietRequestHandler(WSGIRequestHandler):
    """Keeps the stand-in's access log out of the test output; errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class OpenStackCloud:
    """A small OpenStack in one process: start it, seed it, point the code under test at it."""

    def __init__(
        self,
        *,
        image_queued_seconds: float = 0.0,
        image_saving_seconds: float = 0.0,
        nova_max_microversion: str = nova.NOVA_MAX_MICROVERSION,
        hang_seconds: float = 10.0,
        glance_max_limit: int = glance.GLANCE_MAX_LIMIT,
        snapshot_owner: str = "server",
        region: str = "RegionOne",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.image_queued_seconds = image_queued_seconds
        self.image_saving_seconds = image_saving_seconds
        self.nova_max_microversion = nova_max_microversion
        self.hang_seconds = hang_seconds
        self.glance_max_limit = glance_max_limit
        # Who owns a snapshot: "server" (the server's project, what the service expects) or
        # "caller" (the project of the token that asked, what stock Nova does when an admin
        # snapshots another project's server, since it creates the image with the caller's
        # credentials).
        assert snapshot_owner in {"server", "caller"}
        self.snapshot_owner = snapshot_owner
        self.region = region
        self.clock = clock
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.servers: dict[str, CloudServer] = {}
        self.images: dict[str, CloudImage] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._image_outcomes: list[str] = []
        # The server is threaded: its handlers and the test's seeding share this lock.
        self.lock = threading.RLock()
        self._release = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.admin_project_id = self.add_project(ADMIN_PROJECT)
        self.add_user(ADMIN_USER, ADMIN_PASSWORD, self.admin_project_id, ["admin"])

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> OpenStackCloud:
        self._release.clear()
        self._server = make_server(
            "127.0.0.1",
            0,
            make_app(self),
            threaded=True,
            request_handler=_QuietRequestHandler,
        )
        self._thread = threading.Thread(
            # A short poll keeps stop() quick: shutdown() waits up to one poll interval.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openstack-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Hanging handlers wait on this event, so they end instead of outliving the test.
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OpenStackCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the cloud first"
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    @property
    def admin_credentials(self) -> dict[str, str]:
        """Keyword arguments for the service's admin user (with auth_url)."""
        return {
            "auth_url": self.auth_url,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "project_name": ADMIN_PROJECT,
        }

    # -- seeding --------------------------------------------------------------------------

    def add_project(self, name: str | None = None, project_id: str | None = None) -> str:
        project_id = project_id or uuid.uuid4().hex
        with self.lock:
            self.projects[project_id] = Project(project_id, name or f"project-{project_id[:8]}")
        return project_id

    def add_user(self, name: str, password: str, project_id: str, roles: Iterable[str]) -> str:
        user_id = uuid.uuid4().hex
        with self.lock:
            self.users[user_id] = User(user_id, name, password, project_id, list(roles))
        return user_id

    def issue_token(
        self, project_id: str, roles: Iterable[str], *, expires_in: float = 3600.0
    ) -> str:
        """A user token scoped to the project, as if the user had logged in."""
        if project_id not in self.projects:
            self.add_project(project_id=project_id)
        user_id = self.add_user(
            f"user-{secrets.token_hex(4)}", secrets.token_hex(8), project_id, roles
        )
        return self.issue(self.users[user_id], expires_in)

    def issue_system_token(self, roles: Iterable[str], *, expires_in: float = 3600.0) -> str:
        """A system-scoped token (`"scope": {"system": {"all": true}}`) of a new user."""
        user_id = self.add_user(
            f"user-{secrets.token_hex(4)}", secrets.token_hex(8), self.admin_project_id, roles
        )
        value = self.issue(self.users[user_id], expires_in)
        with self.lock:
            self.tokens[value].system = True
        return value

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    def revoke_user_tokens(self, username: str) -> None:
        """Revoke every token of the user (e.g. the service's own, to test re-login)."""
        with self.lock:
            ids = {u.id for u in self.users.values() if u.name == username}
            for value in [v for v, t in self.tokens.items() if t.user_id in ids]:
                del self.tokens[value]

    def add_server(
        self,
        project_id: str,
        name: str | None = None,
        *,
        server_id: str | None = None,
        disk_gb: int = 20,
        task_state: str | None = None,
    ) -> str:
        server_id = server_id or str(uuid.uuid4())
        with self.lock:
            if project_id not in self.projects:
                self.add_project(project_id=project_id)
            self.servers[server_id] = CloudServer(
                server_id,
                project_id,
                name or f"server-{server_id[:8]}",
                disk_gb,
                task_state,
                self.clock(),
            )
        return server_id

    def delete_server(self, server_id: str) -> None:
        with self.lock:
            self.servers.pop(server_id, None)

    def set_task_state(self, server_id: str, task_state: str | None) -> None:
        with self.lock:
            self.servers[server_id].task_state = task_state

    def add_image(
        self,
        owner: str,
        name: str = "manual",
        *,
        server_id: str | None = None,
        properties: dict[str, str] | None = None,
        status: str = "active",
        created_at: float | None = None,
        visibility: str = "private",
    ) -> str:
        """An image made outside the service (a manual snapshot, an upload, a public image)."""
        props = dict(properties or {})
        if server_id is not None:
            props.setdefault("instance_uuid", server_id)
            props.setdefault("image_type", "snapshot")
        image = CloudImage(
            id=str(uuid.uuid4()),
            owner=owner,
            name=name,
            created_at=self.clock() if created_at is None else created_at,
            properties=props,
            visibility=visibility,
            status_override=None if status == "active" else status,
        )
        with self.lock:
            self.images[image.id] = image
        return image.id

    def set_image_status(self, image_id: str, status: str | None) -> None:
        """Force an image's status (None: back to its timeline)."""
        with self.lock:
            self.images[image_id].status_override = status

    def image_status(self, image_id: str) -> str:
        with self.lock:
            return self.images[image_id].status(self.clock())

    def set_image_outcome(self, outcome: str, count: int = 1) -> None:
        """The next `count` snapshots end `outcome`: "killed", or "never" finish."""
        assert outcome in {"active", "killed", "never"}
        with self.lock:
            self._image_outcomes.extend([outcome] * count)

    # -- faults and the wire record -------------------------------------------------------

    def fault(
        self,
        service: str,
        *,
        status: int | None = None,
        hang: bool = False,
        times: int | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        include_discovery: bool = False,
    ) -> None:
        """Make `service` ("keystone", "nova", "glance") answer `status`, or hang, instead.

        A hang lasts `hang_seconds` (or until stop()), past any sensible client timeout.
        Version discovery is spared unless `include_discovery`, so a client gets as far as
        the call the test is about.
        """
        assert service in {"keystone", "nova", "glance"}
        assert status is not None or hang
        with self.lock:
            self._faults.append(
                Fault(service, status, hang, times, method, path_contains, include_discovery)
            )

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def count(
        self,
        service: str | None = None,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        include_discovery: bool = False,
    ) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (service is None or r.service == service)
                and (method is None or r.method == method)
                and (path_contains is None or path_contains in r.path)
                and (include_discovery or not r.discovery)
            )

    def reset_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- what the services ask of it --------------------------------------------------------

    def record(self, request: RecordedRequest) -> Fault | None:
        """Records a request and takes the fault switched on for it, if there is one."""
        with self.lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if f.answers(request)), None)
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        return fault

    def hang(self) -> None:
        self._release.wait(self.hang_seconds)

    def issue(self, user: User, expires_in: float) -> str:
        now = self.clock()
        token = Token(
            secrets.token_urlsafe(32),
            user.id,
            user.project_id,
            list(user.roles),
            now,
            now + expires_in,
        )
        with self.lock:
            self.tokens[token.value] = token
        return token.value

    def valid_token(self, value: str | None) -> Token | None:
        with self.lock:
            token = self.tokens.get(value or "")
        if token is None or token.expires_at <= self.clock():
            return None
        return token

    def next_outcome(self) -> str:
        with self.lock:
            return self._image_outcomes.pop(0) if self._image_outcomes else "active"
