"""The retention rule over random image sets (hypothesis): what it may and may not delete."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.compute.base import ACTIVE, CREATED_BY_KEY, CREATED_BY_VALUE, INSTANCE_UUID_KEY, Image
from common.images import image_name, images_to_delete, is_scheduled_image_of

SERVER = "srv-1"
MARKED = {CREATED_BY_KEY: CREATED_BY_VALUE, INSTANCE_UUID_KEY: SERVER}


@st.composite
def image_sets(draw) -> list[Image]:  # type: ignore[no-untyped-def]
    count = draw(st.integers(0, 30))
    images = []
    for index in range(count):
        metadata = draw(
            st.sampled_from(
                [
                    MARKED,
                    {INSTANCE_UUID_KEY: SERVER},  # manual
                    {CREATED_BY_KEY: CREATED_BY_VALUE},  # marker removed: pinned
                    {
                        CREATED_BY_KEY: CREATED_BY_VALUE,
                        INSTANCE_UUID_KEY: "srv-2",
                    },  # another server
                    {},
                ]
            )
        )
        status = draw(st.sampled_from([ACTIVE, ACTIVE, ACTIVE, "SAVING", "QUEUED", "ERROR"]))
        server = draw(st.sampled_from([SERVER, SERVER, "srv-2"]))
        created = f"2026-11-{draw(st.integers(1, 28)):02d}T{draw(st.integers(0, 23)):02d}:00:00Z"
        images.append(
            Image(f"img-{index}", f"name-{index}", status, server, dict(metadata), created)
        )
    return images


def counted(images: list[Image]) -> list[Image]:
    return [i for i in images if is_scheduled_image_of(i, SERVER) and i.status == ACTIVE]


@given(image_sets(), st.integers(1, 10))
def test_only_scheduled_active_images_of_the_server_are_deleted(images, retention) -> None:
    for image in images_to_delete(images, SERVER, retention):
        assert image.status == ACTIVE
        assert image.metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE
        assert image.metadata.get(INSTANCE_UUID_KEY) == SERVER


@given(image_sets(), st.integers(1, 10))
def test_keeps_exactly_the_newest_retention(images, retention) -> None:
    deleted = images_to_delete(images, SERVER, retention)
    candidates = counted(images)
    assert len(candidates) - len(deleted) == min(retention, len(candidates))
    kept = [i for i in candidates if i not in deleted]
    if deleted and kept:
        assert min(i.created_at for i in kept) >= max(i.created_at for i in deleted)


@given(image_sets(), st.integers(1, 10))
def test_pruning_twice_deletes_nothing_more(images, retention) -> None:
    first = images_to_delete(images, SERVER, retention)
    remaining = [i for i in images if i not in first]
    assert images_to_delete(remaining, SERVER, retention) == []


def test_image_names_follow_the_contract() -> None:
    assert image_name(False, "web", 1764000000) == "Daily-web-1764000000"
    assert image_name(True, "web", 1764000000) == "Weekly-web-1764000000"
    long = image_name(True, "x" * 400, 1764000000)
    assert len(long) == 255
    assert long.endswith("-1764000000")
