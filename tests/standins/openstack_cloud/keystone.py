"""The stand-in's Keystone v3: version discovery, password login with a catalog, token checks."""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING, Any

import flask

from tests.standins.openstack_cloud.model import Token, User
from tests.standins.openstack_cloud.wire import (
    UNAUTHENTICATED,
    authenticated,
    current_cloud,
    error,
    iso,
)

if TYPE_CHECKING:
    from tests.standins.openstack_cloud.cloud import OpenStackCloud

DEFAULT_DOMAIN = {"id": "default", "name": "Default"}

blueprint = flask.Blueprint("keystone", __name__, url_prefix="/identity")


def version() -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{current_cloud().url}/identity/v3/"}],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.identity-v3+json",
            }
        ],
    }


@blueprint.get("")
def identity_versions() -> flask.Response:
    return flask.make_response(flask.jsonify({"versions": {"values": [version()]}}), 300)


@blueprint.get("/v3")
def identity_v3() -> flask.Response:
    return flask.jsonify({"version": version()})


@blueprint.post("/v3/auth/tokens")
def issue_token() -> flask.Response:
    cloud = current_cloud()
    auth = (flask.request.get_json(silent=True) or {}).get("auth") or {}
    password = (auth.get("identity") or {}).get("password") or {}
    wanted = password.get("user") or {}
    user = named_user(cloud, wanted)
    if user is None or wanted.get("password") != user.password:
        return error("keystone", 401, UNAUTHENTICATED)
    scope = (auth.get("scope") or {}).get("project") or {}
    project = cloud.projects[user.project_id]
    if scope.get("id") not in (None, project.id) or scope.get("name") not in (
        None,
        project.name,
    ):
        return error("keystone", 401, "User has no access to the project")
    value = cloud.issue(user, 3600.0)
    response = flask.make_response(flask.jsonify(token_body(cloud, cloud.tokens[value])), 201)
    response.headers["X-Subject-Token"] = value
    return response


@blueprint.get("/v3/auth/tokens")
@authenticated("keystone")
def validate_token(token: Token) -> flask.Response:
    cloud = current_cloud()
    if not {"admin", "service"} & set(token.roles):
        return error("keystone", 403, "You are not authorized to validate tokens.")
    subject = cloud.valid_token(flask.request.headers.get("X-Subject-Token"))
    if subject is None:
        return error("keystone", 404, "Could not find token.")
    catalog = "nocatalog" not in flask.request.args
    response = flask.jsonify(token_body(cloud, subject, catalog=catalog))
    response.headers["X-Subject-Token"] = subject.value
    return response


def named_user(cloud: OpenStackCloud, wanted: dict[str, Any]) -> User | None:
    """The user a login names by id, name or both; None if it names none or no one."""
    with cloud.lock:
        return next(
            (
                u
                for u in cloud.users.values()
                if wanted.get("id") in (None, u.id)
                and wanted.get("name") in (None, u.name)
                and (wanted.get("id") or wanted.get("name"))
            ),
            None,
        )


def token_body(cloud: OpenStackCloud, token: Token, catalog: bool = True) -> dict[str, Any]:
    user = cloud.users[token.user_id]
    project = cloud.projects[token.project_id]
    body: dict[str, Any] = {
        "methods": ["password"],
        "user": {
            "id": user.id,
            "name": user.name,
            "domain": DEFAULT_DOMAIN,
            "password_expires_at": None,
        },
        "project": {"id": project.id, "name": project.name, "domain": DEFAULT_DOMAIN},
        "roles": [{"id": uuid.uuid5(uuid.NAMESPACE_OID, r).hex, "name": r} for r in token.roles],
        "audit_ids": [secrets.token_urlsafe(16)],
        "issued_at": iso(token.issued_at),
        "expires_at": iso(token.expires_at),
        "is_domain": False,
    }
    if token.system:
        del body["project"]
        body["system"] = {"all": True}
    if catalog:
        body["catalog"] = service_catalog(cloud)
    return {"token": body}


def service_catalog(cloud: OpenStackCloud) -> list[dict[str, Any]]:
    return [
        catalog_entry(cloud, "identity", "keystone", f"{cloud.url}/identity"),
        catalog_entry(cloud, "compute", "nova", f"{cloud.url}/compute/v2.1"),
        catalog_entry(cloud, "image", "glance", f"{cloud.url}/image"),
    ]


def catalog_entry(cloud: OpenStackCloud, service_type: str, name: str, url: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid5(uuid.NAMESPACE_URL, url).hex,
        "type": service_type,
        "name": name,
        "endpoints": [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"{url}#{interface}").hex,
                "interface": interface,
                "region": cloud.region,
                "region_id": cloud.region,
                "url": url,
            }
            for interface in ("public", "internal", "admin")
        ],
    }
