"""The stand-in's Glance v2: version discovery, the image list, an image's GET, PATCH, DELETE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import flask

from tests.standins.openstack_cloud.model import CloudImage, Token
from tests.standins.openstack_cloud.wire import (
    authenticated,
    current_cloud,
    error,
    is_admin,
    iso,
)

if TYPE_CHECKING:
    from tests.standins.openstack_cloud.cloud import OpenStackCloud

# List query parameters that are paging or sorting, not filters.
GLANCE_LIST_CONTROLS = frozenset({"limit", "marker", "sort", "sort_key", "sort_dir"})
GLANCE_MAX_LIMIT = 1000
GLANCE_DEFAULT_LIMIT = 25
JSON_PATCH = "application/openstack-images-v2.1-json-patch"

blueprint = flask.Blueprint("glance", __name__, url_prefix="/image")


def image_versions() -> flask.Response:
    values = [
        {
            "id": f"v2.{minor}",
            "status": "CURRENT" if minor == 16 else "SUPPORTED",
            "links": [{"rel": "self", "href": f"{current_cloud().url}/image/v2/"}],
        }
        for minor in (16, 15, 9, 0)
    ]
    return flask.make_response(flask.jsonify({"versions": values}), 300)


blueprint.add_url_rule("", "image_root", image_versions)
blueprint.add_url_rule("/v2", "image_v2", image_versions)


@blueprint.get("/v2/images")
@authenticated("glance")
def list_images(token: Token) -> flask.Response:
    cloud = current_cloud()
    args = flask.request.args
    try:
        limit = min(int(args.get("limit", GLANCE_DEFAULT_LIMIT)), cloud.glance_max_limit)
    except ValueError:
        return error("glance", 400, "limit must be an integer")
    filters = {k: v for k, v in args.items() if k not in GLANCE_LIST_CONTROLS}
    bodies = listed(cloud, token, filters)
    marker = args.get("marker")
    if marker:
        ids = [b["id"] for b in bodies]
        if marker not in ids:
            return error("glance", 400, f"marker {marker} could not be found")
        bodies = bodies[ids.index(marker) + 1 :]
    return flask.jsonify(page_of(bodies, filters, limit))


@blueprint.get("/v2/images/<image_id>")
@authenticated("glance")
def get_image(token: Token, image_id: str) -> flask.Response:
    cloud = current_cloud()
    with cloud.lock:
        image = find_image(cloud, token, image_id)
        if image is None:
            return image_not_found(image_id)
        return flask.jsonify(image_body(image, cloud.clock()))


@blueprint.patch("/v2/images/<image_id>")
@authenticated("glance")
def patch_image(token: Token, image_id: str) -> flask.Response:
    if flask.request.mimetype != JSON_PATCH:
        return error("glance", 415, "Unsupported Content-Type")
    operations = flask.request.get_json(force=True, silent=True)
    if not isinstance(operations, list):
        return error("glance", 400, "A JSON patch list is required")
    cloud = current_cloud()
    with cloud.lock:
        image = find_image(cloud, token, image_id)
        if image is None:
            return image_not_found(image_id)
        for op in operations:
            if op.get("op") != "replace" or op.get("path") != "/owner":
                return error("glance", 400, "Only replacing /owner is supported here")
            if not is_admin(token):
                return error("glance", 403, "Only an admin may change an image's owner")
            image.owner = str(op.get("value"))
        return flask.jsonify(image_body(image, cloud.clock()))


@blueprint.delete("/v2/images/<image_id>")
@authenticated("glance")
def delete_image(token: Token, image_id: str) -> flask.Response:
    cloud = current_cloud()
    with cloud.lock:
        image = find_image(cloud, token, image_id)
        if image is None:
            return image_not_found(image_id)
        if not (is_admin(token) or image.owner == token.project_id):
            return error("glance", 403, "You are not permitted to delete this image.")
        image.deleted = True
    return flask.make_response("", 204)


def visible(token: Token, image: CloudImage) -> bool:
    if image.deleted:
        return False
    return (
        is_admin(token)
        or image.owner == token.project_id
        or image.visibility in ("public", "community")
    )


def find_image(cloud: OpenStackCloud, token: Token, image_id: str) -> CloudImage | None:
    image = cloud.images.get(image_id)
    return image if image is not None and visible(token, image) else None


def image_not_found(image_id: str) -> flask.Response:
    return error("glance", 404, f"No image found with ID {image_id}")


def matches(body: dict[str, Any], key: str, wanted: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if wanted.startswith("in:"):
        return str(value) in wanted[3:].split(",")
    return str(value).lower() == wanted.lower() if key == "status" else str(value) == wanted


def listed(cloud: OpenStackCloud, token: Token, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The bodies of the images the caller sees that match every filter, in Glance's order."""
    now = cloud.clock()
    with cloud.lock:
        bodies = [
            image_body(image, now) for image in cloud.images.values() if visible(token, image)
        ]
    bodies = [b for b in bodies if all(matches(b, k, v) for k, v in filters.items())]
    # Glance's default order: newest first, ties by id.
    bodies.sort(key=lambda b: (b["created_at"], b["id"]), reverse=True)
    return bodies


def page_of(bodies: list[dict[str, Any]], filters: dict[str, str], limit: int) -> dict[str, Any]:
    """The list's answer: the first `limit` bodies, and a link to the rest if there are more."""
    page = bodies[:limit]
    result: dict[str, Any] = {
        "images": page,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    }
    if len(bodies) > limit:
        query = {**filters, "limit": str(limit), "marker": page[-1]["id"]}
        result["next"] = f"/v2/images?{urlencode(query)}"
    return result


def image_body(image: CloudImage, now: float) -> dict[str, Any]:
    status = image.status(now)
    done = status == "active"
    body: dict[str, Any] = {
        "id": image.id,
        "name": image.name,
        "status": status,
        "visibility": image.visibility,
        "protected": False,
        "owner": image.owner,
        "size": 1024**3 if done else None,
        "virtual_size": None,
        "checksum": "0" * 32 if done else None,
        "min_ram": 0,
        "min_disk": image.min_disk,
        "disk_format": "qcow2" if done else None,
        "container_format": "bare" if done else None,
        "created_at": iso(image.created_at),
        "updated_at": iso(max(image.created_at, min(now, image.done_at))),
        "tags": [],
        "self": f"/v2/images/{image.id}",
        "file": f"/v2/images/{image.id}/file",
        "schema": "/v2/schemas/image",
        "os_hidden": False,
        "os_hash_algo": None,
        "os_hash_value": None,
    }
    # Glance puts user properties beside its own fields, never over them.
    for key, value in image.properties.items():
        body.setdefault(key, value)
    return body
