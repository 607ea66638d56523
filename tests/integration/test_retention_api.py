"""Retention explained over HTTP, against PostgreSQL and the simulated cloud: the endpoint's
verdict on every image of a server, then the real prune, which deletes exactly the images
marked delete and nothing else; and who may read it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from api import create_app
from common.clock import utcnow
from common.compute.base import (
    CREATED_BY_KEY,
    CREATED_BY_VALUE,
    INSTANCE_UUID_KEY,
    ComputeError,
)
from common.compute.simulated import SimulatedDriver
from common.db import transaction
from common.images import image_metadata
from common.runs import RunState, request_run
from tests.conftest import Client, ServedApp
from workers.runtime import Runtime
from workers.steps import prune_server

TENANT = "tenant-a"
RETENTION = 2


def images_url(client, server: str, tenant: str | None = None) -> str:  # type: ignore[no-untyped-def]
    return client.schedule_url(server, tenant) + "/images"


class PastCloud:
    """Makes images of a server an hour apart, days ago, so that each is done (ACTIVE, or
    ERROR under that fault) unless its fault hangs it; the API reads them on the real clock."""

    def __init__(self, sessions, settings, server: str) -> None:  # type: ignore[no-untyped-def]
        self.at = utcnow() - dt.timedelta(days=10)
        self.server = server
        self.driver = SimulatedDriver(
            sessions, seconds_per_gb=settings.sim_seconds_per_gb, clock=lambda: self.at
        )

    def image(self, metadata: dict[str, str], fault: str | None = None) -> str:
        self.at += dt.timedelta(hours=1)
        self.driver.set_fault(self.server, fault)
        made = self.driver.create_image(
            TENANT, self.server, f"Daily-web-{int(self.at.timestamp())}", metadata
        )
        self.driver.set_fault(self.server, None)
        return made

    def scheduled(self, fault: str | None = None) -> str:
        return self.image(image_metadata(self.server), fault)


def _record_on_a_run(sessions, server: str, image_id: str) -> None:  # type: ignore[no-untyped-def]
    """The image as the service made it: recorded on one of the server's runs."""
    with transaction(sessions) as session:
        run = request_run(session, TENANT, server, utcnow())
        run.image_id, run.state, run.finished_at = image_id, RunState.DONE, utcnow()


@pytest.fixture
def server(cloud, alice) -> str:  # type: ignore[no-untyped-def]
    [made] = cloud.add_servers(TENANT, 1, disk_gb=1)
    answer = alice.post_schedule(made, {"image_schedule": {"retention": RETENTION}})
    assert answer.status_code == 200, answer.text
    return made


def test_verdicts_explain_the_prune_exactly(alice, server, cloud, sessions, settings) -> None:
    past = PastCloud(sessions, settings, server)
    # Oldest first; each expected (scheduled, fate, reason), newest first below.
    s0 = past.scheduled()
    m0 = past.image({INSTANCE_UUID_KEY: server})  # made by hand
    s1 = past.scheduled()
    p0 = past.image({INSTANCE_UUID_KEY: server})  # the service's, its marker removed
    _record_on_a_run(sessions, server, p0)
    e0 = past.scheduled(fault="image_error")
    s2 = past.scheduled()
    x0 = past.image({CREATED_BY_KEY: CREATED_BY_VALUE, INSTANCE_UUID_KEY: str(uuid.uuid4())})
    s3 = past.scheduled()
    h0 = past.scheduled(fault="image_hang")  # still in progress
    [sibling] = cloud.add_servers(TENANT, 1, disk_gb=1)
    # One clock for the sibling's images, an hour apart, so each is done before the next.
    sibling_cloud = PastCloud(sessions, settings, sibling)
    sibling_images = [sibling_cloud.scheduled() for _ in range(3)]
    expected = [
        (h0, True, "keep", "not_active"),
        (s3, True, "keep", "newest"),
        (x0, False, "keep", "pinned"),
        (s2, True, "keep", "newest"),
        (e0, True, "keep", "not_active"),
        (p0, False, "keep", "pinned"),
        (s1, True, "delete", "beyond_retention"),
        (m0, False, "keep", "manual"),
        (s0, True, "delete", "beyond_retention"),
    ]

    answer = alice.request("GET", images_url(alice, server))
    assert answer.status_code == 200, answer.text
    body = answer.json()["images"]
    assert [(i["id"], i["scheduled"], i["fate"], i["reason"]) for i in body] == expected
    statuses = {i["id"]: i["status"] for i in body}
    assert (statuses[h0], statuses[e0], statuses[s3]) == ("SAVING", "ERROR", "ACTIVE")
    listed = {i.id: i for i in cloud.list_server_images(TENANT, server)}
    for item in body:
        assert item["name"] == listed[item["id"]].name
        assert item["created_at"] == listed[item["id"]].created_at
    assert len(listed) == len(expected), "reading the verdicts deleted something"

    deleted = prune_server(Runtime(settings, sessions, cloud), TENANT, server)
    left = {i.id for i in cloud.list_server_images(TENANT, server)}
    assert deleted == 2
    assert left == {i["id"] for i in body if i["fate"] == "keep"}
    assert {i.id for i in cloud.list_server_images(TENANT, sibling)} == set(sibling_images)
    # After the prune, nothing more is due: the next prune keeps everything that is left.
    again = alice.request("GET", images_url(alice, server)).json()["images"]
    assert [(i["id"], i["fate"], i["reason"]) for i in again] == [
        (image_id, fate, reason) for image_id, _, fate, reason in expected if fate == "keep"
    ]


def test_a_lowered_retention_is_explained_before_it_is_applied(
    alice, server, sessions, settings, cloud
) -> None:
    past = PastCloud(sessions, settings, server)
    made = [past.scheduled() for _ in range(3)]
    assert alice.post_schedule(server, {"image_schedule": {"retention": 1}}).status_code == 200
    body = alice.request("GET", images_url(alice, server)).json()["images"]
    assert [(i["id"], i["reason"]) for i in body] == [
        (made[2], "newest"),
        (made[1], "beyond_retention"),
        (made[0], "beyond_retention"),
    ]
    assert prune_server(Runtime(settings, sessions, cloud), TENANT, server) == 2
    assert [i.id for i in cloud.list_server_images(TENANT, server)] == [made[2]]


def test_no_schedule_and_unknown_server_answer_as_api_md_says(alice, cloud) -> None:
    [bare] = cloud.add_servers(TENANT, 1)
    answer = alice.request("GET", images_url(alice, bare))
    assert answer.status_code == 404
    assert answer.json() == {
        "itemNotFound": {"message": f"Image schedule does not exist for server {bare}", "code": 404}
    }
    unknown = str(uuid.uuid4())
    answer = alice.request("GET", images_url(alice, unknown))
    assert answer.status_code == 404
    assert answer.json() == {
        "itemNotFound": {
            "message": f"Specified instance {unknown} could not be found.",
            "code": 404,
        }
    }


def test_a_server_gone_from_the_cloud_is_unknown(alice, server, cloud) -> None:
    """Its schedule is still stored (the grace period), but the cloud no longer has it."""
    cloud.remove_server(server)
    answer = alice.request("GET", images_url(alice, server))
    assert answer.status_code == 404
    assert answer.json()["itemNotFound"]["message"] == (
        f"Specified instance {server} could not be found."
    )


def test_only_the_servers_tenant_reads_its_images(alice, server, sessions, settings) -> None:
    PastCloud(sessions, settings, server).scheduled()
    observer = alice.as_token("olive")
    mine = alice.request("GET", images_url(alice, server))
    assert observer.request("GET", images_url(alice, server)).json() == mine.json()
    assert len(mine.json()["images"]) == 1
    bob = alice.as_token("bob", "tenant-b")
    # On his own path bob gets what a server that exists nowhere gets; on alice's, refused.
    his = bob.request("GET", images_url(bob, server))
    nowhere = str(uuid.uuid4())
    assert his.status_code == 404
    assert his.json() == {
        "itemNotFound": {"message": f"Specified instance {server} could not be found.", "code": 404}
    }
    assert bob.request("GET", images_url(bob, nowhere)).status_code == 404
    assert bob.request("GET", images_url(alice, server)).status_code == 403
    assert alice.as_token(None).request("GET", images_url(alice, server)).status_code == 401


class ListingFails(SimulatedDriver):
    def list_server_images(self, tenant_id: str, server_id: str) -> list:
        raise ComputeError("Glance answered 500")


def test_a_cloud_that_cannot_list_answers_503(alice, server, sessions, settings) -> None:
    """No listing, no explanation: a guess from part of the images could say "delete" wrongly."""
    served = ServedApp(create_app(settings, sessions=sessions, compute=ListingFails(sessions)))
    try:
        answer = alice.request("GET", images_url(Client(served.base, "alice", TENANT), server))
    finally:
        served.stop()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.json()["serviceUnavailable"]["code"] == 503
