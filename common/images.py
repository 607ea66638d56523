"""Images the service makes: their names and metadata, and the retention rule over them."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from enum import StrEnum

from common.compute.base import (
    ACTIVE,
    CREATED_BY_KEY,
    CREATED_BY_VALUE,
    INSTANCE_UUID_KEY,
    Image,
)

MAX_NAME = 255


def image_name(weekly: bool, server_name: str, stamp: int) -> str:
    """`Daily-<server name>-<unix time>` or `Weekly-...`, cut to 255 characters."""
    prefix = "Weekly" if weekly else "Daily"
    suffix = f"-{stamp}"
    # Cut the server name, not the stamp, so that a long name keeps the name unique per run.
    room = MAX_NAME - len(prefix) - 1 - len(suffix)
    return f"{prefix}-{server_name[:room]}{suffix}"


def image_metadata(server_id: str) -> dict[str, str]:
    return {CREATED_BY_KEY: CREATED_BY_VALUE, INSTANCE_UUID_KEY: server_id}


def is_scheduled_image_of(image: Image, server_id: str) -> bool:
    """Carries both markers for this server: the only images retention may count or delete."""
    return (
        image.metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE
        and image.metadata.get(INSTANCE_UUID_KEY) == server_id
    )


class Fate(StrEnum):
    """What the next prune does with an image."""

    KEEP = "keep"
    DELETE = "delete"


class RetentionReason(StrEnum):
    """Why the prune keeps or deletes an image: the reason codes of API.md."""

    #: A scheduled ACTIVE image of the server among its newest `retention`.
    NEWEST = "newest"
    #: A scheduled ACTIVE image of the server older than its newest `retention`: deleted.
    BEYOND_RETENTION = "beyond_retention"
    #: Not made by the service for this server: no marker.
    MANUAL = "manual"
    #: Made by the service, but no longer carrying both markers for this server.
    PINNED = "pinned"
    #: A scheduled image still in progress, or failed: only ACTIVE images are counted.
    NOT_ACTIVE = "not_active"


@dataclasses.dataclass(frozen=True)
class Verdict:
    image: Image
    #: Carries both markers for the server: an image retention counts.
    scheduled: bool
    reason: RetentionReason

    @property
    def fate(self) -> Fate:
        # Derived from the reason, never stored beside it: one reason deletes, so no verdict
        # can say "delete" for an image the rule protects, or the other way round.
        return Fate.DELETE if self.reason is RetentionReason.BEYOND_RETENTION else Fate.KEEP


def newest_first(images: Iterable[Image]) -> list[Image]:
    """Each image once (a paged listing can repeat one), newest first, ties by id."""
    unique = {image.id: image for image in reversed(list(images))}
    return sorted(unique.values(), key=lambda i: (i.created_at, i.id), reverse=True)


def retention_verdicts(
    images: Iterable[Image],
    server_id: str,
    retention: int,
    recorded_ids: Collection[str] = frozenset(),
) -> list[Verdict]:
    """The retention rule: of every image, newest first, whether the next prune deletes it.

    Only scheduled ACTIVE images of the server beyond the newest `retention` are deleted, so
    manual images, other servers' images and images not ACTIVE are kept, and at least
    `retention` scheduled ACTIVE images remain when there were more.

    `recorded_ids` are the images the server's runs recorded: one of them without its markers
    was pinned by its owner rather than made by hand. They change a reason, never a fate.
    """
    if retention < 1:
        raise ValueError("retention must be at least 1")
    verdicts: list[Verdict] = []
    counted = 0
    for image in newest_first(images):
        scheduled = is_scheduled_image_of(image, server_id)
        if not scheduled:
            made_by_service = (
                image.metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE or image.id in recorded_ids
            )
            reason = RetentionReason.PINNED if made_by_service else RetentionReason.MANUAL
        elif image.status != ACTIVE:
            reason = RetentionReason.NOT_ACTIVE
        else:
            counted += 1
            reason = (
                RetentionReason.NEWEST if counted <= retention else RetentionReason.BEYOND_RETENTION
            )
        verdicts.append(Verdict(image, scheduled, reason))
    return verdicts


def images_to_delete(images: Iterable[Image], server_id: str, retention: int) -> list[Image]:
    """What the prune deletes: the images `retention_verdicts` marks delete, newest first."""
    return [
        v.image for v in retention_verdicts(images, server_id, retention) if v.fate is Fate.DELETE
    ]
