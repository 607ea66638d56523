"""The soak's pure parts: the fleet it draws, when faults strike, and how it judges periods."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt

import pytest

from scheduled_images.soak.checks import (
    RunRow,
    ScheduleRow,
    Window,
    due_occurrences,
    duplicates,
    images_by_period,
    judge_periods,
)
from scheduled_images.soak.faults import fault_plan, parse_faults
from scheduled_images.soak.fleet import draw_fleet
from scheduled_images.soak.recorder import SeenImage, in_progress_at
from scheduled_images.soak.report import KEYS, summary

MONDAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
WINDOW = Window(MONDAY, MONDAY + dt.timedelta(days=2))
DAILY = ScheduleRow("daily", None, 3600, 3, 600.0)
WEEKLY = ScheduleRow("weekly", 1, 86400 + 7200, 2, 600.0)


def image(server: str, at: dt.datetime, fate: str = "ACTIVE", scheduled: bool = True) -> SeenImage:
    return SeenImage(f"{server}-{at.isoformat()}", server, at, at, fate, scheduled)


def test_the_fleet_is_skewed_weekly_in_part_and_the_same_for_a_seed() -> None:
    fleet = draw_fleet(2000, 100, seed=3, seconds_per_gb=10)
    assert fleet == draw_fleet(2000, 100, seed=3, seconds_per_gb=10)
    sizes = sorted(collections.Counter(s.tenant for s in fleet).values(), reverse=True)
    assert len(sizes) == 100 and min(sizes) >= 1
    assert sum(sizes[:10]) > sum(sizes[10:])  # a few large tenants, many small
    days = collections.Counter(s.day_of_week for s in fleet if s.day_of_week is not None)
    assert 0.2 < sum(days.values()) / len(fleet) < 0.4
    assert days[5] + days[6] > days[0] + days[1] + days[2]  # the weekend is crowded
    median = sorted(s.expected_s for s in fleet)[len(fleet) // 2]
    assert 500 < median < 700
    assert {s.extra_image for s in fleet} == {None, "manual", "pinned"}


def test_faults_are_named_and_planned_in_the_soak() -> None:
    with pytest.raises(ValueError, match="unknown fault fire"):
        parse_faults("kill-workers,fire")
    plan = fault_plan(parse_faults("kill-workers,redis-restart,postgres-restart"), MONDAY, 2)
    kinds = collections.Counter(p.kind for p in plan)
    assert kinds == {"kill-workers": 7, "redis-restart": 2, "postgres-restart": 1}
    assert all(MONDAY < p.at < WINDOW.end for p in plan)
    assert [p.at for p in plan] == sorted(p.at for p in plan)


def test_due_periods_are_the_slots_inside_the_soak() -> None:
    assert due_occurrences(DAILY, WINDOW) == [
        MONDAY + dt.timedelta(hours=1),
        MONDAY + dt.timedelta(days=1, hours=1),
    ]
    assert due_occurrences(WEEKLY, WINDOW) == [MONDAY + dt.timedelta(days=1, hours=2)]
    at_the_start = ScheduleRow("first", None, 0, 3, 600.0)
    assert due_occurrences(at_the_start, WINDOW)[0] == MONDAY


def run(server: str, when: dt.datetime, state: str, image: SeenImage | None) -> RunRow:
    reason = "image_error" if state == "failed" else None
    started = image.created_at if image else None
    return RunRow(server, when, state, reason, image.id if image else None, started)


def test_periods_are_done_failed_or_lost_and_images_counted_once() -> None:
    day1, day2 = due_occurrences(DAILY, WINDOW)
    (week,) = due_occurrences(WEEKLY, WINDOW)
    late = dt.timedelta(minutes=5)
    first_try = image("daily", day1 + late, fate="ERROR")  # a failed attempt, retried
    done = image("daily", day1 + late * 2)
    failed = image("weekly", week + late, fate="ERROR")
    # Day one's run started so late that day two's slot had passed: its image is still its.
    late_start = image("daily", day2 + late)
    day2_image = image("daily", day2 + late * 3)
    twice = image("daily", day2 + late * 4)  # a second image of day two, no run recorded it
    runs = [
        run("daily", day1, "done", done),
        run("weekly", week, "failed", failed),
        run("daily", day2, "saving", day2_image),
    ]
    runs[0] = dataclasses.replace(runs[0], image_id=late_start.id, started_at=first_try.created_at)
    found, unaccounted = images_by_period(
        [
            first_try,
            done,
            failed,
            late_start,
            day2_image,
            twice,
            image("daily", day2, scheduled=False),
        ],
        runs,
    )
    assert unaccounted == []
    assert found[("daily", day1)] == [first_try, done, late_start]
    figures, lateness, lost = judge_periods([DAILY, WEEKLY], runs, found, WINDOW)
    assert figures["periods_due"] == 3
    assert figures["periods_done"] == 1
    assert figures["periods_lost"] == 1  # day two's run never ended
    assert lost == [f"period {day2:%Y-%m-%dT%H:%M:%SZ} of server daily lost: run saving"]
    assert figures["runs_failed"] == 1
    assert figures["failed_by_reason"] == {"image_error": 1}
    assert figures["on_day_share"] == 1.0
    assert sorted(lateness) == [300.0, 300.0, 900.0]
    # Day one: done and late_start, two images not in ERROR; day two: day2_image and twice.
    assert duplicates(found, unaccounted) == 2
    assert duplicates({}, [twice, failed]) == 1


def test_the_summary_has_exactly_the_keys_and_is_ok_only_when_nothing_went_wrong() -> None:
    figures = {key: 0 for key in KEYS if key != "ok"} | {"periods_due": 5}
    assert list(summary(figures)) == list(KEYS)
    assert summary(figures)["ok"] is True
    assert summary(figures | {"duplicate_images": 1})["ok"] is False
    with pytest.raises(ValueError):
        summary(figures | {"extra": 1})


def test_images_in_progress_are_counted_at_each_minute() -> None:
    minute = dt.timedelta(minutes=1)
    images = [
        SeenImage("a", "s1", MONDAY, MONDAY + 3 * minute, "ACTIVE", True),
        SeenImage("b", "s2", MONDAY + minute, MONDAY + 2 * minute, "ERROR", True),
        SeenImage("c", "s3", MONDAY + 2 * minute, None, "SAVING", True),  # never finishes
    ]
    moments = [MONDAY + k * minute for k in range(5)]
    assert in_progress_at(images, moments) == [1, 2, 2, 1, 1]
