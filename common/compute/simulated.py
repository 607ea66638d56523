"""The simulated cloud: servers and images kept in the service's own database.

Every process (API, workers, tests) that shares the database sees one cloud. An image's
status is not stored but follows from its times: QUEUED until `saving_at`, SAVING until
`done_at`, then its fate (ACTIVE, ERROR, or SAVING forever for a hang).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy import orm

from common.clock import utcnow
from common.compute.base import (
    ACTIVE,
    ERROR,
    QUEUED,
    SAVING,
    ComputeDriver,
    ComputeError,
    Image,
    ImageNotFound,
    Server,
    ServerBusy,
    ServerNotFound,
)
from common.db import make_read_session_factory, read, read_row, transaction
from common.models import SimImage, SimServer

# create_error: the create call fails; image_error: the image ends in ERROR; image_hang: it
# never finishes; busy: the server has an image of its own in progress; slow_create: the call
# returns only after a pause, though the image already exists (a crash window to test);
# create_hang: the call hangs until the client's timeout.
FAULTS = ("create_error", "image_error", "image_hang", "busy", "slow_create", "create_hang")
# A little time in QUEUED before SAVING, as a real cloud shows.
QUEUED_SHARE = 0.1


def _in_progress(server_id: object, now: object) -> sa.Exists:
    """Whether the server has an image that is not finished at `now`, as an EXISTS (each a
    value or a column)."""
    return sa.exists().where(
        SimImage.server_id == server_id, sa.or_(SimImage.done_at > now, SimImage.fate == SAVING)
    )


# A server and whether it is busy, in one statement built once: the API looks the path's server
# up on every write.
_SERVER = sa.select(
    SimServer.tenant_id,
    SimServer.name,
    SimServer.disk_gb,
    SimServer.fault,
    _in_progress(SimServer.id, sa.bindparam("now", type_=sa.DateTime(timezone=True))).label(
        "image_in_progress"
    ),
).where(SimServer.id == sa.bindparam("server_id"))


@dataclasses.dataclass(frozen=True)
class Draws:
    """The cloud's chance: each image's duration around its disk's, and faults by chance.

    Every draw follows from the seed and the image's name, so the processes sharing the cloud
    agree, a run is reproducible, and a create asked again for the same name gets the same
    answer.
    """

    #: Sigma of the lognormal factor (mean 1) on an image's duration; 0: none.
    duration_sigma: float = 0.0
    #: Share of creates answered with a 500.
    create_error_rate: float = 0.0
    #: Share of images that end in ERROR.
    image_error_rate: float = 0.0
    seed: int = 0

    def _random(self, name: str, what: str) -> random.Random:
        digest = hashlib.blake2b(f"{self.seed}:{what}:{name}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def duration_factor(self, name: str) -> float:
        if self.duration_sigma <= 0:
            return 1.0
        sigma = self.duration_sigma
        return math.exp(self._random(name, "duration").gauss(-sigma * sigma / 2, sigma))

    def create_fails(self, name: str) -> bool:
        return self._random(name, "create").random() < self.create_error_rate

    def image_fails(self, name: str) -> bool:
        return self._random(name, "image").random() < self.image_error_rate


NO_CHANCE = Draws()


class SimulatedDriver(ComputeDriver):
    def __init__(
        self,
        sessions: orm.sessionmaker[orm.Session],
        seconds_per_gb: float = 0.5,
        clock: Callable[[], dt.datetime] = utcnow,
        timeout_s: float = 30.0,
        slow_create_s: float = 5.0,
        draws: Draws = NO_CHANCE,
    ) -> None:
        self._sessions = sessions
        self._reads = make_read_session_factory(sessions)
        self._seconds_per_gb = seconds_per_gb
        self._clock = clock
        self._timeout_s = timeout_s
        self._slow_create_s = slow_create_s
        self._draws = draws

    # -- the driver interface -------------------------------------------------------------

    def get_server(self, tenant_id: str, server_id: str) -> Server:
        row = read_row(self._reads, _SERVER, {"server_id": server_id, "now": self._clock()})
        if row is None or row.tenant_id != tenant_id:
            raise ServerNotFound(f"server {server_id} not found")
        busy = row.fault == "busy" or row.image_in_progress
        return Server(server_id, row.tenant_id, row.name, busy, row.disk_gb)

    def create_image(
        self, tenant_id: str, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        now = self._clock()
        with transaction(self._sessions) as session:
            # The row lock makes "busy?" and "start an image" one step across processes.
            row = session.execute(
                _SERVER.with_for_update(of=SimServer), {"server_id": server_id, "now": now}
            ).one_or_none()
            if row is None or row.tenant_id != tenant_id:
                raise ServerNotFound(f"server {server_id} not found")
            hangs = row.fault == "create_hang"
            if not hangs:
                if row.fault == "create_error" or self._draws.create_fails(name):
                    raise ComputeError(f"simulated create failure (500) for server {server_id}")
                if row.fault == "busy" or row.image_in_progress:
                    raise ServerBusy(f"server {server_id} has an image in progress")
                image = self._new_image(row, tenant_id, server_id, name, metadata, now)
                session.add(image)
        if hangs:
            time.sleep(self._timeout_s)
            raise ComputeError(f"the compute API did not answer in {self._timeout_s:g}s")
        if row.fault == "slow_create":
            time.sleep(self._slow_create_s)
        return image.id

    def _new_image(
        self,
        row: sa.Row,
        tenant_id: str,
        server_id: str,
        name: str,
        metadata: dict[str, str],
        now: dt.datetime,
    ) -> SimImage:
        seconds = row.disk_gb * self._seconds_per_gb * self._draws.duration_factor(name)
        duration = dt.timedelta(seconds=max(seconds, 0.001))
        fate = {"image_error": ERROR, "image_hang": SAVING}.get(row.fault or "", ACTIVE)
        if fate == ACTIVE and self._draws.image_fails(name):
            fate = ERROR
        return SimImage(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            server_id=server_id,
            name=name[:255],
            image_metadata=dict(metadata),
            created_at=now,
            saving_at=now + duration * QUEUED_SHARE,
            done_at=now + duration,
            fate=fate,
        )

    def get_image(self, tenant_id: str, image_id: str) -> Image:
        found = self.get_images(tenant_id, [image_id])
        if image_id not in found:
            raise ImageNotFound(f"image {image_id} not found")
        return found[image_id]

    def get_images(self, tenant_id: str, image_ids: Iterable[str]) -> dict[str, Image]:
        ids = list(image_ids)
        if not ids:
            return {}
        rows = read(
            self._reads,
            lambda session: session.scalars(
                sa.select(SimImage).where(SimImage.id.in_(ids), SimImage.tenant_id == tenant_id)
            ).all(),
        )
        now = self._clock()
        return {row.id: self._image(row, now) for row in rows}

    def list_server_images(self, tenant_id: str, server_id: str) -> list[Image]:
        rows = read(
            self._reads,
            lambda session: session.scalars(
                sa.select(SimImage)
                .where(SimImage.server_id == server_id, SimImage.tenant_id == tenant_id)
                .order_by(SimImage.created_at)
            ).all(),
        )
        now = self._clock()
        return [self._image(row, now) for row in rows]

    def delete_image(self, tenant_id: str, image_id: str) -> None:
        with transaction(self._sessions) as session:
            deleted = session.execute(
                sa.delete(SimImage).where(SimImage.id == image_id, SimImage.tenant_id == tenant_id)
            )
            if deleted.rowcount == 0:
                raise ImageNotFound(f"image {image_id} not found")

    # -- operating the simulated cloud ----------------------------------------------------

    def add_servers(
        self,
        tenant_id: str,
        count: int,
        disk_gb: int | Sequence[int] = 20,
        fault: str | None = None,
    ) -> list[str]:
        """`count` new servers of the tenant; `disk_gb` one size for all, or one per server."""
        check_fault(fault)
        disks = [disk_gb] * count if isinstance(disk_gb, int) else list(disk_gb)
        if len(disks) != count:
            raise ValueError(f"{len(disks)} disk sizes for {count} servers")
        ids = [str(uuid.uuid4()) for _ in range(count)]
        with transaction(self._sessions) as session:
            session.add_all(
                SimServer(id=i, tenant_id=tenant_id, name=f"server-{i[:8]}", disk_gb=d, fault=fault)
                for i, d in zip(ids, disks, strict=True)
            )
        return ids

    def set_fault(self, server_id: str, fault: str | None) -> None:
        check_fault(fault)
        with transaction(self._sessions) as session:
            row = session.get(SimServer, server_id)
            if row is None:
                raise ServerNotFound(f"server {server_id} not found")
            row.fault = fault

    def remove_server(self, server_id: str) -> None:
        """The server vanishes from the cloud; its images stay, as they do in a real one."""
        with transaction(self._sessions) as session:
            if session.get(SimServer, server_id) is None:
                raise ServerNotFound(f"server {server_id} not found")
            session.execute(sa.delete(SimServer).where(SimServer.id == server_id))

    def server_tenant(self, server_id: str) -> str:
        with self._sessions() as session:
            row = session.get(SimServer, server_id)
            if row is None:
                raise ServerNotFound(f"server {server_id} not found")
            return row.tenant_id

    def create_manual_image(self, server_id: str, name: str | None = None) -> str:
        """An image a user made by hand: no scheduled-images marker, so retention skips it."""
        tenant_id = self.server_tenant(server_id)
        return self.create_image(
            tenant_id, server_id, name or f"manual-{server_id[:8]}", {"instance_uuid": server_id}
        )

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _image(row: SimImage, now: dt.datetime) -> Image:
        if now < row.saving_at:
            status, updated = QUEUED, row.created_at
        elif now < row.done_at:
            status, updated = SAVING, row.saving_at
        else:
            status, updated = row.fate, row.done_at
        return Image(
            row.id,
            row.name,
            status,
            row.server_id,
            dict(row.image_metadata),
            _iso(row.created_at),
            _iso(updated),
        )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_fault(fault: str | None) -> None:
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
