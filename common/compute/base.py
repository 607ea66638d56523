"""The compute driver interface: what the service needs from a cloud, and nothing more."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterable

# Image statuses as Glance/Nova report them, upper-cased.
QUEUED = "QUEUED"
SAVING = "SAVING"
ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETED = "DELETED"

CREATED_BY_KEY = "org.openstack__1__created_by"
CREATED_BY_VALUE = "scheduled_images_service"
INSTANCE_UUID_KEY = "instance_uuid"


@dataclasses.dataclass(frozen=True)
class Server:
    id: str
    tenant_id: str
    name: str
    # True while the cloud reports an image of this server in progress
    # (Nova's task_state image_snapshot/image_pending_upload/image_uploading).
    image_in_progress: bool = False
    disk_gb: int = 20


@dataclasses.dataclass(frozen=True)
class Image:
    id: str
    name: str
    status: str
    server_id: str | None
    metadata: dict[str, str]
    created_at: str  # ISO 8601, UTC, "Z"
    # Its last change, as created_at: for an image just finished, when it finished.
    updated_at: str = ""
    # Whether the service made it for a server, and so whether retention may count it, is
    # the retention rule's to say: common.images.is_scheduled_image_of.


class ComputeError(Exception):
    """The compute side failed in a way that may pass: retry later."""


class ServerNotFound(ComputeError):
    """The server does not exist (or not for this tenant)."""


class ServerBusy(ComputeError):
    """The server already has an image in progress (Nova answers 409)."""


class ImageNotFound(ComputeError):
    """The image does not exist (already deleted is fine for retention)."""


class ComputeDriver(abc.ABC):
    """One cloud. Every call is scoped to a tenant so no call can cross tenants."""

    @abc.abstractmethod
    def get_server(self, tenant_id: str, server_id: str) -> Server:
        """The server, or ServerNotFound when it is missing or belongs to another tenant."""

    @abc.abstractmethod
    def create_image(
        self, tenant_id: str, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        """Start an image of the server; return its id. ServerBusy if one is in progress."""

    @abc.abstractmethod
    def get_image(self, tenant_id: str, image_id: str) -> Image:
        """The image, or ImageNotFound."""

    def get_images(self, tenant_id: str, image_ids: Iterable[str]) -> dict[str, Image]:
        """Many images at once where the cloud allows; missing ids are left out."""
        found = {}
        for image_id in image_ids:
            with contextlib.suppress(ImageNotFound):
                found[image_id] = self.get_image(tenant_id, image_id)
        return found

    @abc.abstractmethod
    def list_server_images(self, tenant_id: str, server_id: str) -> list[Image]:
        """Every image of the server that the tenant can see, manual ones included."""

    @abc.abstractmethod
    def delete_image(self, tenant_id: str, image_id: str) -> None:
        """Delete the image; ImageNotFound if it is already gone."""
