"""The openstack compute driver over real HTTP against the stand-in Nova, Glance and Keystone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from common.compute.base import (
    ACTIVE,
    CREATED_BY_KEY,
    CREATED_BY_VALUE,
    DELETED,
    ERROR,
    INSTANCE_UUID_KEY,
    QUEUED,
    SAVING,
    ComputeError,
    ImageNotFound,
    ServerBusy,
    ServerNotFound,
)
from common.compute.openstack import IDS_PER_LIST_CALL, OpenStackDriver
from common.images import is_scheduled_image_of
from tests.standins.openstack_cloud import ManualClock, OpenStackCloud


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cloud(clock: ManualClock) -> Iterator[OpenStackCloud]:
    with OpenStackCloud(
        clock=clock, image_queued_seconds=10, image_saving_seconds=50, hang_seconds=5
    ) as cloud:
        yield cloud


@pytest.fixture
def driver(cloud: OpenStackCloud) -> OpenStackDriver:
    return OpenStackDriver(**cloud.admin_credentials, region_name="RegionOne", timeout=0.5)


@pytest.fixture
def tenant(cloud: OpenStackCloud) -> str:
    return cloud.add_project("tenant-a")


@pytest.fixture
def other(cloud: OpenStackCloud) -> str:
    return cloud.add_project("tenant-b")


def scheduled_metadata(server_id: str) -> dict[str, str]:
    return {CREATED_BY_KEY: CREATED_BY_VALUE, INSTANCE_UUID_KEY: server_id}


# -- servers ----------------------------------------------------------------------------------


def test_get_server_reads_owner_name_and_disk(cloud, driver, tenant):
    server_id = cloud.add_server(tenant, "web-1", disk_gb=80)

    server = driver.get_server(tenant, server_id)

    assert (server.id, server.tenant_id, server.name) == (server_id, tenant, "web-1")
    assert server.disk_gb == 80
    assert server.image_in_progress is False


@pytest.mark.parametrize(
    "task_state",
    ["image_snapshot", "image_snapshot_pending", "image_pending_upload", "image_uploading"],
)
def test_get_server_reports_an_image_in_progress(cloud, driver, tenant, task_state):
    server_id = cloud.add_server(tenant, task_state=task_state)

    assert driver.get_server(tenant, server_id).image_in_progress is True


def test_a_task_state_that_is_not_an_image_is_not_an_image_in_progress(cloud, driver, tenant):
    server_id = cloud.add_server(tenant, task_state="resize_prep")

    assert driver.get_server(tenant, server_id).image_in_progress is False


def test_missing_server_is_not_found(driver, tenant):
    with pytest.raises(ServerNotFound):
        driver.get_server(tenant, "5b7f0e0a-0000-4000-8000-000000000000")


def test_another_tenants_server_is_not_found(cloud, driver, tenant, other):
    server_id = cloud.add_server(other)

    with pytest.raises(ServerNotFound):
        driver.get_server(tenant, server_id)


def test_old_nova_without_embedded_flavor_gives_the_default_disk(clock):
    with OpenStackCloud(clock=clock, nova_max_microversion="2.1") as cloud:
        tenant = cloud.add_project()
        server_id = cloud.add_server(tenant, disk_gb=500)
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)

        assert driver.get_server(tenant, server_id).disk_gb == 20


# -- creating images --------------------------------------------------------------------------


def test_create_image_goes_queued_saving_active(cloud, driver, tenant, clock):
    server_id = cloud.add_server(tenant, "web-1")

    image_id = driver.create_image(
        tenant, server_id, "Daily-web-1-1", scheduled_metadata(server_id)
    )

    action = [r for r in cloud.requests if r.path.endswith("/action")]
    assert len(action) == 1
    assert "2.45" in action[0].headers.get("Openstack-Api-Version", "")
    image = driver.get_image(tenant, image_id)
    assert (image.name, image.status, image.server_id) == ("Daily-web-1-1", QUEUED, server_id)
    assert is_scheduled_image_of(image, server_id)
    assert driver.get_server(tenant, server_id).image_in_progress is True
    clock.advance(10)
    assert driver.get_image(tenant, image_id).status == SAVING
    assert driver.get_server(tenant, server_id).image_in_progress is True
    clock.advance(50)
    assert driver.get_image(tenant, image_id).status == ACTIVE
    assert driver.get_server(tenant, server_id).image_in_progress is False


def test_create_image_reads_the_location_header_of_an_old_nova(clock):
    with OpenStackCloud(clock=clock, nova_max_microversion="2.44") as cloud:
        tenant = cloud.add_project()
        server_id = cloud.add_server(tenant)
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)

        image_id = driver.create_image(tenant, server_id, "Weekly-x-1", {"k": "v"})

        assert image_id in cloud.images
        assert cloud.images[image_id].properties["k"] == "v"


def test_create_image_on_a_busy_server_is_server_busy(cloud, driver, tenant):
    server_id = cloud.add_server(tenant)
    driver.create_image(tenant, server_id, "first", scheduled_metadata(server_id))

    # Nova's own 409: the first snapshot is still uploading.
    with pytest.raises(ServerBusy):
        driver.create_image(tenant, server_id, "second", scheduled_metadata(server_id))
    assert len(cloud.images) == 1


def test_create_image_of_another_tenants_server_is_not_found_and_makes_nothing(
    cloud, driver, tenant, other
):
    server_id = cloud.add_server(other)

    with pytest.raises(ServerNotFound):
        driver.create_image(tenant, server_id, "steal", scheduled_metadata(server_id))
    assert cloud.images == {}
    assert cloud.count("nova", method="POST") == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [(409, ServerBusy), (404, ServerNotFound), (500, ComputeError), (503, ComputeError)],
)
def test_nova_errors_on_create_are_mapped(cloud, driver, tenant, status, error):
    server_id = cloud.add_server(tenant)
    cloud.fault("nova", status=status, method="POST")

    with pytest.raises(error) as caught:
        driver.create_image(tenant, server_id, "x", scheduled_metadata(server_id))

    if error is ComputeError:
        assert not isinstance(caught.value, ServerBusy | ServerNotFound)
    assert cloud.images == {}


def test_nova_500_on_get_server_is_a_compute_error_not_a_missing_server(cloud, driver, tenant):
    server_id = cloud.add_server(tenant)
    cloud.fault("nova", status=500)

    with pytest.raises(ComputeError) as caught:
        driver.get_server(tenant, server_id)
    assert not isinstance(caught.value, ServerNotFound)


def test_a_hanging_nova_times_out_as_a_compute_error(cloud, driver, tenant):
    server_id = cloud.add_server(tenant)
    driver.get_server(tenant, server_id)  # authenticated and discovered before the hang
    cloud.fault("nova", hang=True, method="POST")

    started = time.monotonic()
    with pytest.raises(ComputeError) as caught:
        driver.create_image(tenant, server_id, "x", scheduled_metadata(server_id))

    assert time.monotonic() - started < 3
    assert not isinstance(caught.value, ServerBusy | ServerNotFound)


def test_an_unreachable_cloud_is_a_compute_error(clock):
    cloud = OpenStackCloud(clock=clock).start()
    credentials = cloud.admin_credentials
    cloud.stop()
    driver = OpenStackDriver(**credentials, timeout=0.5)

    with pytest.raises(ComputeError):
        driver.get_server("t", "s")


def test_keystone_refusing_the_service_is_a_compute_error(cloud, driver, tenant):
    server_id = cloud.add_server(tenant)
    cloud.fault("keystone", status=500, include_discovery=True)

    with pytest.raises(ComputeError) as caught:
        driver.get_server(tenant, server_id)
    assert not isinstance(caught.value, ServerNotFound)


# -- reading images ---------------------------------------------------------------------------


def test_get_image_gives_properties_as_strings_and_utc_time(cloud, driver, tenant, clock):
    server_id = cloud.add_server(tenant)
    image_id = cloud.add_image(
        tenant,
        "manual",
        server_id=server_id,
        properties={"os_distro": "ubuntu", "custom": "1"},
        created_at=1_700_000_000,
    )

    image = driver.get_image(tenant, image_id)

    assert image.status == ACTIVE
    assert image.created_at == "2023-11-14T22:13:20Z"
    assert image.server_id == server_id
    assert image.metadata == {
        "os_distro": "ubuntu",
        "custom": "1",
        "instance_uuid": server_id,
        "image_type": "snapshot",
    }
    assert not is_scheduled_image_of(image, server_id)


@pytest.mark.parametrize(
    ("glance_status", "status"),
    [
        ("queued", QUEUED),
        ("saving", SAVING),
        ("importing", SAVING),
        ("active", ACTIVE),
        ("killed", ERROR),
        ("deactivated", ERROR),
        ("pending_delete", DELETED),
        ("something_new", ERROR),
    ],
)
def test_glance_statuses_are_mapped(cloud, driver, tenant, glance_status, status):
    image_id = cloud.add_image(tenant, status=glance_status)

    assert driver.get_image(tenant, image_id).status == status


def test_a_snapshot_that_fails_ends_in_error(cloud, driver, tenant, clock):
    server_id = cloud.add_server(tenant)
    cloud.set_image_outcome("killed")

    image_id = driver.create_image(tenant, server_id, "x", scheduled_metadata(server_id))
    clock.advance(60)

    assert driver.get_image(tenant, image_id).status == ERROR


@pytest.mark.parametrize("visibility", ["private", "public"])
def test_another_tenants_image_is_not_found(cloud, driver, tenant, other, visibility):
    image_id = cloud.add_image(other, visibility=visibility)

    with pytest.raises(ImageNotFound):
        driver.get_image(tenant, image_id)
    assert driver.get_images(tenant, [image_id]) == {}


def test_missing_image_is_not_found(driver, tenant):
    with pytest.raises(ImageNotFound):
        driver.get_image(tenant, "00000000-0000-4000-8000-000000000000")


def test_glance_500_is_a_compute_error(cloud, driver, tenant):
    image_id = cloud.add_image(tenant)
    cloud.fault("glance", status=500)

    with pytest.raises(ComputeError) as caught:
        driver.get_image(tenant, image_id)
    assert not isinstance(caught.value, ImageNotFound)
    with pytest.raises(ComputeError):
        driver.get_images(tenant, [image_id])


def test_a_hanging_glance_times_out_as_a_compute_error(cloud, driver, tenant):
    server_id = cloud.add_server(tenant)
    cloud.fault("glance", hang=True)

    started = time.monotonic()
    with pytest.raises(ComputeError):
        driver.list_server_images(tenant, server_id)
    assert time.monotonic() - started < 3


def test_get_images_asks_glance_in_batches_not_once_per_image(cloud, driver, tenant, other):
    mine = [cloud.add_image(tenant, f"img-{i}") for i in range(2 * IDS_PER_LIST_CALL + 7)]
    theirs = cloud.add_image(other, "theirs")
    missing = "00000000-0000-4000-8000-000000000000"
    driver.get_images(tenant, [])  # authentication and discovery out of the count
    cloud.reset_requests()

    found = driver.get_images(tenant, [*mine, theirs, missing, mine[0]])

    assert set(found) == set(mine)
    assert all(found[i].id == i and found[i].name.startswith("img-") for i in mine)
    assert cloud.count("glance", method="GET", path_contains="/images/") == 0
    assert cloud.count("glance", method="GET") == 3
    assert all(
        r.query["owner"] == tenant
        for r in cloud.requests
        if r.service == "glance" and not r.discovery
    )


def test_get_images_follows_glance_pages(clock):
    with OpenStackCloud(clock=clock, glance_max_limit=10) as cloud:
        tenant = cloud.add_project()
        ids = [cloud.add_image(tenant, f"img-{i}") for i in range(25)]
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)

        assert set(driver.get_images(tenant, ids)) == set(ids)
        assert cloud.count("glance", method="GET") == 3


def test_list_server_images_includes_manual_ones_and_nothing_else(
    cloud, driver, tenant, other, clock
):
    server_id = cloud.add_server(tenant)
    other_server = cloud.add_server(tenant)
    scheduled = driver.create_image(tenant, server_id, "Daily-a-1", scheduled_metadata(server_id))
    manual = cloud.add_image(tenant, "by hand", server_id=server_id)
    cloud.add_image(tenant, "other server", server_id=other_server)
    cloud.add_image(tenant, "no server")
    # Another project's image that claims to be of this server must not appear.
    cloud.add_image(other, "forged", properties=scheduled_metadata(server_id))
    deleted = cloud.add_image(tenant, "gone", server_id=server_id)
    driver.delete_image(tenant, deleted)

    images = {image.id: image for image in driver.list_server_images(tenant, server_id)}

    assert set(images) == {scheduled, manual}
    assert is_scheduled_image_of(images[scheduled], server_id)
    assert not is_scheduled_image_of(images[manual], server_id)
    lists = [r for r in cloud.requests if r.service == "glance" and r.path.endswith("/images")]
    assert lists[-1].query["instance_uuid"] == server_id
    # No owner filter: a snapshot stranded in the service's own project must be found too;
    # other projects' images are dropped by the driver (the forged one above).
    assert "owner" not in lists[-1].query


def test_list_server_images_follows_glance_pages(clock):
    with OpenStackCloud(clock=clock, glance_max_limit=10) as cloud:
        tenant = cloud.add_project()
        server_id = cloud.add_server(tenant)
        ids = {cloud.add_image(tenant, f"i{i}", server_id=server_id) for i in range(23)}
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)

        assert {image.id for image in driver.list_server_images(tenant, server_id)} == ids
        assert cloud.count("glance", method="GET") == 3


# -- deleting images --------------------------------------------------------------------------


def test_delete_image_removes_it_and_a_second_delete_is_not_found(cloud, driver, tenant):
    image_id = cloud.add_image(tenant)

    driver.delete_image(tenant, image_id)

    assert cloud.images[image_id].deleted
    with pytest.raises(ImageNotFound):
        driver.get_image(tenant, image_id)
    with pytest.raises(ImageNotFound):
        driver.delete_image(tenant, image_id)


def test_delete_of_another_tenants_image_is_not_found_and_keeps_it(cloud, driver, tenant, other):
    image_id = cloud.add_image(other)

    with pytest.raises(ImageNotFound):
        driver.delete_image(tenant, image_id)

    assert not cloud.images[image_id].deleted
    assert cloud.count("glance", method="DELETE") == 0


def test_glance_404_on_delete_is_image_not_found(cloud, driver, tenant):
    image_id = cloud.add_image(tenant)
    cloud.fault("glance", status=404, method="DELETE")

    with pytest.raises(ImageNotFound):
        driver.delete_image(tenant, image_id)


def test_glance_500_on_delete_is_a_compute_error(cloud, driver, tenant):
    image_id = cloud.add_image(tenant)
    cloud.fault("glance", status=500, method="DELETE")

    with pytest.raises(ComputeError) as caught:
        driver.delete_image(tenant, image_id)
    assert not isinstance(caught.value, ImageNotFound)
    assert not cloud.images[image_id].deleted


def test_a_snapshot_stock_nova_gives_to_the_admins_project_is_still_found(clock):
    with OpenStackCloud(clock=clock, snapshot_owner="caller") as cloud:
        tenant = cloud.add_project()
        server_id = cloud.add_server(tenant)
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)

        image_id = driver.create_image(tenant, server_id, "x", scheduled_metadata(server_id))

        assert driver.get_image(tenant, image_id).id == image_id
        assert [i.id for i in driver.list_server_images(tenant, server_id)] == [image_id]


def test_a_snapshot_stranded_in_the_admins_project_by_a_crash_is_adopted(clock):
    with OpenStackCloud(clock=clock, snapshot_owner="caller") as cloud:
        tenant = cloud.add_project()
        other = cloud.add_project()
        server_id = cloud.add_server(tenant)
        driver = OpenStackDriver(**cloud.admin_credentials, timeout=2)
        admin_project = driver._conn.current_project_id
        stranded = cloud.add_image(
            admin_project, server_id=server_id, properties=scheduled_metadata(server_id)
        )
        foreign = cloud.add_image(
            other, server_id=server_id, properties=scheduled_metadata(server_id)
        )

        found = [i.id for i in driver.list_server_images(tenant, server_id)]

        assert found == [stranded]
        assert driver.get_image(tenant, stranded).id == stranded
        with pytest.raises(ImageNotFound):
            driver.get_image(tenant, foreign)


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "..",
        "a/b",
        "../../os-hypervisors",
        "x?all_tenants=1",
        "%2e%2e",
        "not-a-uuid",
        "0b7e6a0e-3f5c-4c5e-9b0a-2f1d8c7e6a5b/../x",
        "0b7e6a0e-3f5c-4c5e-9b0a-2f1d8c7e6a5b,0b7e6a0e-3f5c-4c5e-9b0a-2f1d8c7e6a5c",
    ],
)
def test_ids_that_would_leave_the_resource_path_are_not_found(cloud, driver, tenant, bad_id):
    with pytest.raises(ServerNotFound):
        driver.get_server(tenant, bad_id)
    with pytest.raises(ImageNotFound):
        driver.get_image(tenant, bad_id)
    assert cloud.count("nova") == cloud.count("glance") == 0
