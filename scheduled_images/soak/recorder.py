"""The cloud's own records, followed while the soak runs: every image it is asked for, and
how many of the service's images are in progress at each simulated minute.

A pass reads the images not finished at the last minute it counted (so every image is read
before any prune could delete it) and counts the minutes up to shortly before now: an image
asked for is committed an instant after its creation time, so the last moments wait for the
next pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc, orm

from common.clock import Clock
from common.compute.base import CREATED_BY_KEY, CREATED_BY_VALUE, INSTANCE_UUID_KEY, SAVING

log = logging.getLogger(__name__)

MINUTE = dt.timedelta(minutes=1)
#: Real seconds between passes.
PASS_INTERVAL_S = 0.25
#: Real seconds a new image may take to be committed after its creation time.
COMMIT_LAG_S = 2.0


@dataclasses.dataclass(frozen=True)
class SeenImage:
    id: str
    server_id: str
    created_at: dt.datetime
    #: When it stops being in progress; None for an image that never does.
    done_at: dt.datetime | None
    fate: str
    #: Carries both of the service's markers for its server.
    scheduled: bool


class CloudRecorder:
    def __init__(
        self, sessions: orm.sessionmaker[orm.Session], clock: Clock, start: dt.datetime
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._start = start
        self._counted_to = start - MINUTE
        self._until: dt.datetime | None = None
        self.images: dict[str, SeenImage] = {}
        #: (simulated minute, service images in progress then), one per minute counted.
        self.samples: list[tuple[dt.datetime, int]] = []
        self._lock = threading.Lock()

    def run(self, stopping: threading.Event, until: dt.datetime) -> None:
        self._until = until
        while not stopping.wait(PASS_INTERVAL_S):
            try:
                self.read_pass(COMMIT_LAG_S)
            except exc.SQLAlchemyError as error:  # a database restart: the next pass catches up
                log.warning("cloud records not read", extra={"error": str(error)[:200]})

    def read_pass(self, lag_real_s: float) -> None:
        now = self._clock.now()
        with self._sessions() as session:
            rows = session.execute(
                sa.text(
                    """
                    SELECT id, server_id, metadata, created_at, done_at, fate FROM sim_images
                    WHERE done_at > :since OR created_at > :since OR fate = :hang
                    """
                ),
                {"since": self._counted_to, "hang": SAVING},
            ).all()
        seen = [_seen(row) for row in rows]
        with self._lock:
            self.images.update((image.id, image) for image in seen)
            upto = now - dt.timedelta(seconds=lag_real_s * self._clock.speed)
            if self._until is not None:
                upto = min(upto, self._until)
            self._count_minutes([i for i in seen if i.scheduled], upto)

    def _count_minutes(self, images: list[SeenImage], upto: dt.datetime) -> None:
        count = int((upto - self._counted_to) / MINUTE)
        if count <= 0:
            return
        minutes = [self._counted_to + MINUTE * (k + 1) for k in range(count)]
        self.samples.extend(zip(minutes, in_progress_at(images, minutes), strict=True))
        self._counted_to = minutes[-1]

    def latest(self) -> int:
        with self._lock:
            return self.samples[-1][1] if self.samples else 0


def in_progress_at(images: list[SeenImage], moments: list[dt.datetime]) -> list[int]:
    """How many of the images were in progress (asked for, not yet finished) at each moment."""
    starts = np.sort(np.array([i.created_at.timestamp() for i in images], dtype=float))
    ends = np.sort(
        np.array([np.inf if i.done_at is None else i.done_at.timestamp() for i in images])
    )
    at = np.array([m.timestamp() for m in moments])
    started = np.searchsorted(starts, at, side="right")
    ended = np.searchsorted(ends, at, side="right")
    return (started - ended).tolist()


def _seen(row: sa.Row) -> SeenImage:
    metadata = row.metadata or {}
    scheduled = (
        metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE
        and metadata.get(INSTANCE_UUID_KEY) == row.server_id
    )
    done = None if row.fate == SAVING else row.done_at
    return SeenImage(row.id, row.server_id, row.created_at, done, row.fate, scheduled)
