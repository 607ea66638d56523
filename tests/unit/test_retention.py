"""The retention rule over random image sets (hypothesis): what it may and may not delete, and
that its explanation (a verdict for every image) is what the prune does; then one example per
reason code of API.md."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.compute.base import ACTIVE, CREATED_BY_KEY, CREATED_BY_VALUE, INSTANCE_UUID_KEY, Image
from common.images import (
    Fate,
    RetentionReason,
    image_name,
    images_to_delete,
    is_scheduled_image_of,
    retention_verdicts,
)

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
    # A paged listing can name an image twice; the rule must count it once.
    repeated = draw(st.lists(st.sampled_from(images), max_size=3)) if images else []
    return images + repeated


def counted(images: list[Image]) -> list[Image]:
    """The scheduled ACTIVE images of SERVER, each once: what retention counts."""
    unique = {i.id: i for i in images}
    return [i for i in unique.values() if is_scheduled_image_of(i, SERVER) and i.status == ACTIVE]


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


# -- the explanation is the prune ----------------------------------------------------------


@given(image_sets(), st.integers(1, 10), st.data())
def test_the_verdicts_deletions_are_what_the_prune_deletes(images, retention, data) -> None:
    """Whatever runs the service recorded, the images marked delete are the prune's, in order."""
    ids = sorted({i.id for i in images})
    recorded = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set()))
    verdicts = retention_verdicts(images, SERVER, retention, recorded)
    marked = [v.image for v in verdicts if v.fate == Fate.DELETE]
    assert marked == images_to_delete(images, SERVER, retention)


@given(image_sets(), st.integers(1, 10))
def test_every_image_has_one_verdict_newest_first(images, retention) -> None:
    verdicts = retention_verdicts(images, SERVER, retention)
    assert sorted(v.image.id for v in verdicts) == sorted({i.id for i in images})
    keys = [(v.image.created_at, v.image.id) for v in verdicts]
    assert keys == sorted(keys, reverse=True)


@given(image_sets(), st.integers(1, 10))
def test_verdicts_never_break_the_retention_rule(images, retention) -> None:
    """DESIGN.md: never a manual image, another server's or one not ACTIVE; never fewer than
    `retention` scheduled ACTIVE images left when there were more."""
    verdicts = retention_verdicts(images, SERVER, retention)
    for verdict in verdicts:
        if verdict.fate == Fate.DELETE:
            assert verdict.image.status == ACTIVE
            assert verdict.image.metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE
            assert verdict.image.metadata.get(INSTANCE_UUID_KEY) == SERVER
    kept = [v.image for v in verdicts if v.fate == Fate.KEEP and v.image in counted(images)]
    assert len(kept) == min(retention, len(counted(images)))


@given(image_sets(), st.integers(1, 10), st.data())
def test_each_reason_says_what_the_image_is(images, retention, data) -> None:
    ids = sorted({i.id for i in images})
    recorded = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set()))
    verdicts = retention_verdicts(images, SERVER, retention, recorded)
    ranked = [v.reason for v in verdicts if v.scheduled and v.image.status == ACTIVE]
    kept = min(retention, len(ranked))
    assert ranked == [RetentionReason.NEWEST] * kept + [RetentionReason.BEYOND_RETENTION] * (
        len(ranked) - kept
    )
    for verdict in verdicts:
        image, reason = verdict.image, verdict.reason
        assert verdict.scheduled == is_scheduled_image_of(image, SERVER)
        assert (verdict.fate == Fate.DELETE) == (reason == RetentionReason.BEYOND_RETENTION)
        if reason in (RetentionReason.NEWEST, RetentionReason.BEYOND_RETENTION):
            assert verdict.scheduled and image.status == ACTIVE
        elif reason == RetentionReason.NOT_ACTIVE:
            assert verdict.scheduled and image.status != ACTIVE
        else:
            made_by_service = (
                image.metadata.get(CREATED_BY_KEY) == CREATED_BY_VALUE or image.id in recorded
            )
            assert not verdict.scheduled
            assert reason == (RetentionReason.PINNED if made_by_service else RetentionReason.MANUAL)


# -- one example per reason ------------------------------------------------------------------


def _image(
    image_id: str, hour: int, status: str = ACTIVE, metadata: dict[str, str] | None = None
) -> Image:
    created = f"2026-11-20T{hour:02d}:00:00Z"
    return Image(
        image_id,
        f"name-{image_id}",
        status,
        SERVER,
        dict(MARKED if metadata is None else metadata),
        created,
    )


def _reasons(images: list[Image], retention: int, recorded: set[str] | None = None) -> list:
    verdicts = retention_verdicts(images, SERVER, retention, recorded or set())
    return [(v.image.id, v.scheduled, v.fate.value, v.reason.value) for v in verdicts]


def test_the_newest_retention_are_kept_and_older_deleted() -> None:
    images = [_image("a", 1), _image("c", 3), _image("b", 2)]
    assert _reasons(images, 2) == [
        ("c", True, "keep", "newest"),
        ("b", True, "keep", "newest"),
        ("a", True, "delete", "beyond_retention"),
    ]


def test_same_time_images_are_ranked_by_id() -> None:
    images = [_image("a", 1), _image("b", 1)]
    assert _reasons(images, 1) == [
        ("b", True, "keep", "newest"),
        ("a", True, "delete", "beyond_retention"),
    ]


def test_a_manual_image_is_kept_and_not_counted() -> None:
    images = [_image("m", 9, metadata={INSTANCE_UUID_KEY: SERVER}), _image("a", 1)]
    assert _reasons(images, 1) == [
        ("m", False, "keep", "manual"),
        ("a", True, "keep", "newest"),
    ]


def test_an_image_without_any_metadata_is_manual() -> None:
    assert _reasons([_image("m", 9, metadata={})], 1) == [("m", False, "keep", "manual")]


@pytest.mark.parametrize(
    "metadata",
    [
        {CREATED_BY_KEY: CREATED_BY_VALUE},
        {CREATED_BY_KEY: CREATED_BY_VALUE, INSTANCE_UUID_KEY: "srv-2"},
    ],
    ids=["server marker removed", "another server's"],
)
def test_an_image_of_the_service_without_this_servers_markers_is_pinned(metadata) -> None:
    images = [_image("p", 9, metadata=metadata), _image("a", 1)]
    assert _reasons(images, 1) == [
        ("p", False, "keep", "pinned"),
        ("a", True, "keep", "newest"),
    ]


def test_a_recorded_image_whose_marker_was_removed_is_pinned_not_manual() -> None:
    """Removing the service's marker leaves what a manual image has: only the runs know."""
    unmarked = {INSTANCE_UUID_KEY: SERVER}
    images = [_image("p", 9, metadata=unmarked), _image("m", 8, metadata=unmarked)]
    assert _reasons(images, 1, recorded={"p"}) == [
        ("p", False, "keep", "pinned"),
        ("m", False, "keep", "manual"),
    ]


@pytest.mark.parametrize("status", ["QUEUED", "SAVING", "ERROR"])
def test_a_scheduled_image_not_active_is_kept_and_not_counted(status) -> None:
    images = [_image("s", 9, status=status), _image("b", 2), _image("a", 1)]
    assert _reasons(images, 2) == [
        ("s", True, "keep", "not_active"),
        ("b", True, "keep", "newest"),
        ("a", True, "keep", "newest"),
    ]


def test_an_image_listed_twice_is_counted_once() -> None:
    images = [_image("b", 2), _image("b", 2), _image("a", 1)]
    assert _reasons(images, 2) == [("b", True, "keep", "newest"), ("a", True, "keep", "newest")]
    assert images_to_delete(images, SERVER, 2) == []


@pytest.mark.parametrize("retention", [0, -1])
def test_retention_below_one_is_refused(retention) -> None:
    with pytest.raises(ValueError, match="^retention must be at least 1$"):
        retention_verdicts([_image("a", 1)], SERVER, retention)
    with pytest.raises(ValueError, match="^retention must be at least 1$"):
        images_to_delete([_image("a", 1)], SERVER, retention)


def test_image_names_follow_the_contract() -> None:
    assert image_name(False, "web", 1764000000) == "Daily-web-1764000000"
    assert image_name(True, "web", 1764000000) == "Weekly-web-1764000000"
    long = image_name(True, "x" * 400, 1764000000)
    assert len(long) == 255
    assert long.endswith("-1764000000")
