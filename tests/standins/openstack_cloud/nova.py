"""The stand-in's Nova: version discovery, microversions, a server's GET and its snapshots."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import flask

from tests.standins.openstack_cloud.model import CloudImage, CloudServer, Token
from tests.standins.openstack_cloud.wire import (
    authenticated,
    current_cloud,
    error,
    is_admin,
    iso,
)

if TYPE_CHECKING:
    from tests.standins.openstack_cloud.cloud import OpenStackCloud

NOVA_MAX_MICROVERSION = "2.96"
# The task states real Nova goes through while it snapshots a server.
SNAPSHOT_TASK_STATES = {"queued": "image_pending_upload", "saving": "image_uploading"}

blueprint = flask.Blueprint("nova", __name__, url_prefix="/compute")


def version() -> dict[str, Any]:
    cloud = current_cloud()
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": cloud.nova_max_microversion,
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{cloud.url}/compute/v2.1/"}],
    }


@blueprint.get("")
def compute_versions() -> flask.Response:
    return flask.jsonify({"versions": [version()]})


@blueprint.get("/v2.1")
def compute_v21() -> flask.Response:
    return flask.jsonify({"version": version()})


@blueprint.get("/v2.1/servers/<server_id>")
@authenticated("nova")
def get_server(token: Token, server_id: str) -> flask.Response:
    cloud = current_cloud()
    now = cloud.clock()
    with cloud.lock:
        server = find_server(cloud, token, server_id)
        if server is None:
            return server_not_found(server_id)
        body = server_body(server, task_state(cloud, server, now), now)
    return nova_response({"server": body})


@blueprint.post("/v2.1/servers/<server_id>/action")
@authenticated("nova")
def server_action(token: Token, server_id: str) -> flask.Response:
    cloud = current_cloud()
    action = (flask.request.get_json(silent=True) or {}).get("createImage")
    if not isinstance(action, dict) or not action.get("name"):
        return error("nova", 400, "Only createImage with a name is supported here")
    now = cloud.clock()
    with cloud.lock:
        server = find_server(cloud, token, server_id)
        if server is None:
            return server_not_found(server_id)
        state = task_state(cloud, server, now)
        if state is not None:
            return error(
                "nova",
                409,
                f"Cannot 'createImage' instance {server_id} while it is in task_state {state}",
            )
        image = snapshot(cloud, token, server, action, now)
    if microversion() >= (2, 45):
        return nova_response({"image_id": image.id}, 202)
    response = nova_response({}, 202)
    response.headers["Location"] = f"{cloud.url}/image/v2/images/{image.id}"
    return response


def microversion() -> tuple[int, int]:
    """The microversion the request asks for, by either of the headers Nova reads."""
    header = flask.request.headers.get("OpenStack-API-Version", "")
    value = header.split()[-1] if header.startswith("compute") else ""
    value = value or flask.request.headers.get("X-OpenStack-Nova-API-Version", "2.1")
    if value == "latest":
        value = current_cloud().nova_max_microversion
    major, minor = value.split(".")
    return int(major), int(minor)


def nova_response(body: Any, status: int = 200) -> flask.Response:
    response = flask.make_response(flask.jsonify(body), status)
    major, minor = microversion()
    response.headers["OpenStack-API-Version"] = f"compute {major}.{minor}"
    response.headers["X-OpenStack-Nova-API-Version"] = f"{major}.{minor}"
    return response


def find_server(cloud: OpenStackCloud, token: Token, server_id: str) -> CloudServer | None:
    """The server if the caller may see it: an admin sees all, others their project's."""
    server = cloud.servers.get(server_id)
    if server is None or not (is_admin(token) or server.project_id == token.project_id):
        return None
    return server


def server_not_found(server_id: str) -> flask.Response:
    return error("nova", 404, f"Instance {server_id} could not be found.")


def task_state(cloud: OpenStackCloud, server: CloudServer, now: float) -> str | None:
    """The test's task state, else that of a snapshot still on its way (not a forced status)."""
    if server.task_state:
        return server.task_state
    for image in cloud.images.values():
        if image.properties.get("instance_uuid") == server.id:
            state = SNAPSHOT_TASK_STATES.get(image.status(now))
            if state and image.status_override is None:
                return state
    return None


def server_body(server: CloudServer, state: str | None, now: float) -> dict[str, Any]:
    return {
        "id": server.id,
        "name": server.name,
        "status": "ACTIVE",
        "tenant_id": server.project_id,
        "user_id": "u-" + server.project_id[:8],
        "created": iso(server.created_at),
        "updated": iso(now),
        "metadata": {},
        "addresses": {},
        "links": [],
        "flavor": flavor(server),
        "image": {"id": "base-image", "links": []},
        "OS-EXT-STS:task_state": state,
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1,
    }


def flavor(server: CloudServer) -> dict[str, Any]:
    if microversion() < (2, 47):
        return {"id": "m1.small", "links": []}
    # From 2.47 Nova embeds the flavor instead of linking to it.
    return {
        "original_name": "m1.small",
        "vcpus": 1,
        "ram": 2048,
        "disk": server.disk_gb,
        "ephemeral": 0,
        "swap": 0,
        "extra_specs": {},
    }


def snapshot(
    cloud: OpenStackCloud, token: Token, server: CloudServer, action: dict[str, Any], now: float
) -> CloudImage:
    """Starts a snapshot of the server as createImage does, on the cloud's timeline."""
    properties = {str(k): str(v) for k, v in (action.get("metadata") or {}).items()}
    properties.update(
        instance_uuid=server.id,
        image_type="snapshot",
        base_image_ref="base-image",
        user_id=token.user_id,
    )
    queued_until = now + cloud.image_queued_seconds
    image = CloudImage(
        id=str(uuid.uuid4()),
        owner=server.project_id if cloud.snapshot_owner == "server" else token.project_id,
        name=str(action["name"]),
        created_at=now,
        properties=properties,
        min_disk=server.disk_gb,
        queued_until=queued_until,
        done_at=queued_until + cloud.image_saving_seconds,
        outcome=cloud.next_outcome(),
    )
    cloud.images[image.id] = image
    return image
