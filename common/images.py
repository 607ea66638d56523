"""Images the service makes: their names and metadata, and the retention rule over them."""

from __future__ import annotations

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


def images_to_delete(images: list[Image], server_id: str, retention: int) -> list[Image]:
    """The scheduled ACTIVE images of the server beyond the newest `retention`.

    Manual images, other servers' images and images not ACTIVE are never returned, so
    at least `retention` scheduled ACTIVE images always remain when there were more.
    """
    if retention < 1:
        raise ValueError("retention must be at least 1")
    kept = sorted(
        (i for i in images if is_scheduled_image_of(i, server_id) and i.status == ACTIVE),
        key=lambda i: (i.created_at, i.id),
        reverse=True,
    )
    return kept[retention:]
