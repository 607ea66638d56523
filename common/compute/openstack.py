"""The openstack compute driver: Nova and Glance through openstacksdk, scoped to one tenant."""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import keystoneauth1.exceptions
import openstack.connection
import openstack.exceptions
import requests
from openstack.compute.v2.server import Server as NovaServer

from common.compute.base import (
    ACTIVE,
    DELETED,
    ERROR,
    INSTANCE_UUID_KEY,
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
from common.ids import is_uuid

# Nova task states that mean a snapshot of the server is under way.
IMAGE_TASK_STATES = frozenset(
    {"image_snapshot", "image_snapshot_pending", "image_pending_upload", "image_uploading"}
)
GLANCE_STATUSES = {
    "queued": QUEUED,
    "saving": SAVING,
    "uploading": SAVING,
    "importing": SAVING,
    "active": ACTIVE,
    "deleted": DELETED,
    "pending_delete": DELETED,
    # killed is Glance's word for a failed upload; a deactivated image cannot be used, so
    # it must not count as a good scheduled image either.
    "killed": ERROR,
    "deactivated": ERROR,
}
# Glance's own image fields; every other key of an image is a user property.
GLANCE_CORE_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "visibility",
        "protected",
        "owner",
        "size",
        "virtual_size",
        "checksum",
        "min_ram",
        "min_disk",
        "disk_format",
        "container_format",
        "created_at",
        "updated_at",
        "tags",
        "self",
        "file",
        "schema",
        "locations",
        "direct_url",
        "stores",
        "os_hidden",
        "os_hash_algo",
        "os_hash_value",
    }
)
DEFAULT_DISK_GB = 20
# Ids per Glance `id=in:` query: 50 UUIDs keep the URL near 2 KB, well under proxy limits.
IDS_PER_LIST_CALL = 50
# Glance's default api_limit_max; asking for more is silently capped anyway.
GLANCE_PAGE_SIZE = 1000


class OpenStackDriver(ComputeDriver):
    """A real cloud, reached with admin credentials and narrowed to one tenant per call.

    The admin can see every project's servers and images, so each answer is checked against
    the tenant: a server or image of another project is reported as not found.
    """

    def __init__(
        self,
        auth_url: str,
        username: str,
        password: str,
        project_name: str,
        user_domain_name: str = "Default",
        project_domain_name: str = "Default",
        region_name: str | None = None,
        interface: str = "public",
        timeout: float = 30.0,
    ) -> None:
        self._config: dict[str, Any] = {
            "auth_type": "password",
            "auth": {
                "auth_url": auth_url,
                "username": username,
                "password": password,
                "project_name": project_name,
                "user_domain_name": user_domain_name,
                "project_domain_name": project_domain_name,
            },
            "region_name": region_name or "",
            "interface": interface,
            "api_timeout": timeout,
            # The workers retry with back-off of their own; retries inside the SDK would only
            # hold a worker slot and hide the failure from the run's attempt count.
            "connect_retries": 0,
            "status_code_retries": 0,
            "image_status_code_retries": 0,
        }
        self._local = threading.local()

    @property
    def _conn(self) -> openstack.connection.Connection:
        # One connection per thread: a keystoneauth session is not meant to be shared by
        # threads, and building one makes no network call (auth happens on first use).
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = openstack.connection.Connection(app_name="scheduled-images", **self._config)
            self._local.conn = conn
        return conn

    # -- Nova -------------------------------------------------------------------------------

    def get_server(self, tenant_id: str, server_id: str) -> Server:
        if not is_uuid(server_id):
            raise ServerNotFound(f"server {server_id}")
        with _translate(ServerNotFound, f"server {server_id}"):
            found = self._conn.compute.get_server(server_id)
        if found.project_id != tenant_id or (found.status or "").upper() == "DELETED":
            raise ServerNotFound(f"server {server_id}")
        return Server(
            id=found.id,
            tenant_id=found.project_id,
            name=found.name or "",
            image_in_progress=found.task_state in IMAGE_TASK_STATES,
            disk_gb=_flavor_disk(found.flavor),
        )

    def create_image(
        self, tenant_id: str, server_id: str, name: str, metadata: dict[str, str]
    ) -> str:
        # Nova would snapshot any project's server for the admin: check the owner first.
        self.get_server(tenant_id, server_id)
        with _translate(ServerNotFound, f"server {server_id}", conflict=ServerBusy):
            # The SDK picks microversion 2.45 when the cloud has it and reads the id from the
            # JSON body, else from the Location header of older clouds.
            image_id = NovaServer(id=server_id).create_image(
                self._conn.compute, name, dict(metadata)
            )
        # Nova files an admin's snapshot under the admin's own project; the image belongs in
        # the tenant's account, where the tenant sees it and retention counts it.
        self._adopt(tenant_id, image_id)
        return image_id

    def _adopt(self, tenant_id: str, image_id: str) -> None:
        with _translate(ImageNotFound, f"image {image_id}"):
            body = self._glance("GET", f"/images/{image_id}").json()
        if body.get("owner") == tenant_id:
            return
        if body.get("owner") != self._conn.current_project_id:
            raise ImageNotFound(f"image {image_id}")
        with _translate(ImageNotFound, f"image {image_id}"):
            self._glance(
                "PATCH",
                f"/images/{image_id}",
                json=[{"op": "replace", "path": "/owner", "value": tenant_id}],
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )

    # -- Glance -----------------------------------------------------------------------------

    def get_image(self, tenant_id: str, image_id: str) -> Image:
        if not is_uuid(image_id):
            raise ImageNotFound(f"image {image_id}")
        with _translate(ImageNotFound, f"image {image_id}"):
            body = self._glance("GET", f"/images/{image_id}").json()
        if body.get("owner") != tenant_id:
            raise ImageNotFound(f"image {image_id}")
        return _image(body)

    def get_images(self, tenant_id: str, image_ids: Iterable[str]) -> dict[str, Image]:
        # A comma would split into extra ids inside Glance's `in:` list; no real id has one.
        wanted = list(dict.fromkeys(i for i in image_ids if is_uuid(i)))
        found: dict[str, Image] = {}
        for start in range(0, len(wanted), IDS_PER_LIST_CALL):
            chunk = wanted[start : start + IDS_PER_LIST_CALL]
            query = {"id": "in:" + ",".join(chunk), "owner": tenant_id}
            for body in self._list_images(query, page_size=len(chunk)):
                if body.get("owner") == tenant_id and body.get("id") in chunk:
                    found[body["id"]] = _image(body)
        return found

    def list_server_images(self, tenant_id: str, server_id: str) -> list[Image]:
        try:
            self.get_server(tenant_id, server_id)
            # A snapshot left in the service's own project by a crash between Nova's answer
            # and its adoption is the tenant's too: it is adopted here, found by its server.
            stray_owner = self._conn.current_project_id
        except ServerNotFound:
            stray_owner = None
        images = []
        for body in self._list_images({INSTANCE_UUID_KEY: server_id}, GLANCE_PAGE_SIZE):
            if body.get(INSTANCE_UUID_KEY) != server_id:
                continue
            if body.get("owner") == stray_owner and stray_owner is not None:
                self._adopt(tenant_id, body["id"])
                body = {**body, "owner": tenant_id}
            if body.get("owner") == tenant_id:
                images.append(_image(body))
        return images

    def delete_image(self, tenant_id: str, image_id: str) -> None:
        # get_image first: the admin could delete any project's image, so the owner is
        # checked before anything is removed.
        self.get_image(tenant_id, image_id)
        with _translate(ImageNotFound, f"image {image_id}"):
            self._glance("DELETE", f"/images/{image_id}")

    def _list_images(self, query: dict[str, str], page_size: int) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {**query, "limit": page_size}
        seen: set[str] = set()
        while True:
            with _translate(ComputeError, "image list"):
                page = self._glance("GET", "/images", params=params).json()
            images = page.get("images") or []
            fresh = [i for i in images if i.get("id") not in seen]
            yield from fresh
            seen.update(i.get("id") for i in fresh)
            # Glance may hand out a `next` link on a full last page; an empty or repeated
            # page ends the walk either way.
            if not page.get("next") or not fresh:
                return
            params = {**query, "limit": page_size, "marker": images[-1]["id"]}

    def _glance(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # Raw calls on the SDK's image adapter (auth, catalog and discovery included): the
        # SDK's Image resource drops unknown query filters such as instance_uuid and files
        # well-known properties away from the rest, and the driver needs both intact.
        response = self._conn.image.request(path, method, **kwargs)
        openstack.exceptions.raise_from_response(response)
        return response


@contextlib.contextmanager
def _translate(
    not_found: type[ComputeError], what: str, conflict: type[ComputeError] = ComputeError
) -> Iterator[None]:
    """Turn SDK and transport errors into the driver's own, so callers see one vocabulary."""
    try:
        yield
    except openstack.exceptions.NotFoundException as exc:
        raise not_found(what) from exc
    except openstack.exceptions.ConflictException as exc:
        raise conflict(f"{what}: {_reason(exc)}") from exc
    except openstack.exceptions.HttpException as exc:
        raise ComputeError(f"{what}: HTTP {exc.status_code}: {_reason(exc)}") from exc
    except (
        openstack.exceptions.SDKException,
        keystoneauth1.exceptions.ClientException,
        requests.RequestException,
        ValueError,  # a body that is not JSON
        KeyError,  # an old Nova's createImage answer without a Location header
    ) as exc:
        raise ComputeError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _reason(exc: openstack.exceptions.HttpException) -> str:
    return str(exc.details or exc.message or exc)


def _flavor_disk(flavor: Any) -> int:
    # Nova embeds the flavor (with its disk) from microversion 2.47; older clouds only link
    # to it, and a second call per server is not worth an estimate.
    disk = getattr(flavor, "disk", None) if flavor is not None else None
    if isinstance(disk, int) and disk > 0:
        return disk
    return DEFAULT_DISK_GB


def _image(body: dict[str, Any]) -> Image:
    metadata = {
        str(key): value if isinstance(value, str) else json.dumps(value)
        for key, value in body.items()
        if key not in GLANCE_CORE_FIELDS and not key.startswith("os_glance") and value is not None
    }
    return Image(
        id=body["id"],
        name=body.get("name") or "",
        status=GLANCE_STATUSES.get(str(body.get("status", "")).lower(), ERROR),
        server_id=metadata.get(INSTANCE_UUID_KEY),
        metadata=metadata,
        created_at=_utc_iso(body.get("created_at")),
        updated_at=_utc_iso(body.get("updated_at")),
    )


def _utc_iso(value: str | None) -> str:
    if not value:
        return ""
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
