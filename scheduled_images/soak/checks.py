"""The soak judged at its end, from the database and the cloud's own records.

A due period is an occurrence of a schedule's slot inside the soak; its run is the scheduled
run of that server and occurrence (one at most: a unique index). An image belongs to the run
that recorded it, or that asked for it in an earlier attempt. An image that ended in ERROR
was a failed attempt, which the run retried: it is no second image of its period.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import datetime as dt

import numpy as np
import sqlalchemy as sa
from sqlalchemy import orm

from common.compute.base import (
    ACTIVE,
    CREATED_BY_KEY,
    CREATED_BY_VALUE,
    ERROR,
    INSTANCE_UUID_KEY,
)
from common.run_state import FINAL, OPEN, RunState
from common.slots import next_run_at, period_length
from scheduled_images.soak.recorder import SeenImage


@dataclasses.dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


@dataclasses.dataclass(frozen=True)
class ScheduleRow:
    server_id: str
    day_of_week: int | None
    slot_s: int
    retention: int
    expected_s: float


@dataclasses.dataclass(frozen=True)
class Judged:
    """The figures of summary.json that come from the records, and the series for the plots."""

    figures: dict
    #: Seconds from each due period's slot to its first image's request.
    lateness_s: list[float]
    #: (minute, planned images in flight), over the soak.
    planned: list[tuple[dt.datetime, float]]


def load_schedules(session: orm.Session) -> list[ScheduleRow]:
    rows = session.execute(
        sa.text(
            "SELECT server_id, day_of_week, slot_s, retention, expected_duration_s FROM schedules"
        )
    ).all()
    return [ScheduleRow(*row) for row in rows]


def due_occurrences(schedule: ScheduleRow, window: Window) -> list[dt.datetime]:
    """The slot's occurrences inside the soak."""
    step = dt.timedelta(seconds=period_length(schedule.day_of_week))
    just_before = window.start - dt.timedelta(microseconds=1)
    at = next_run_at(schedule.day_of_week, schedule.slot_s, just_before)
    found = []
    while at < window.end:
        found.append(at)
        at += step
    return found


@dataclasses.dataclass(frozen=True)
class RunRow:
    server_id: str
    scheduled_for: dt.datetime
    state: str
    reason: str | None
    image_id: str | None
    started_at: dt.datetime | None


def load_runs(session: orm.Session) -> list[RunRow]:
    rows = session.execute(
        sa.text(
            "SELECT server_id, scheduled_for, state, reason, image_id, started_at FROM runs"
            " WHERE trigger = 'schedule'"
        )
    ).all()
    return [RunRow(*row) for row in rows]


Period = tuple[str, dt.datetime]


def images_by_period(
    images: list[SeenImage], runs: list[RunRow]
) -> tuple[dict[Period, list[SeenImage]], list[SeenImage]]:
    """The service's images by the period of the run that asked for them, oldest first; and
    those no run accounts for.

    A run records its last attempt's image. An earlier attempt's image belongs to the run of
    its server that had started last when it was asked for: a server has one run in flight
    at a time.
    """
    recorded = {run.image_id: run for run in runs if run.image_id}
    started: dict[str, list[RunRow]] = collections.defaultdict(list)
    for run in sorted((r for r in runs if r.started_at), key=lambda r: r.started_at):
        started[run.server_id].append(run)
    found: dict[Period, list[SeenImage]] = collections.defaultdict(list)
    unaccounted = []
    for image in sorted((i for i in images if i.scheduled), key=lambda i: i.created_at):
        run = recorded.get(image.id)
        if run is None:
            candidates = started.get(image.server_id, [])
            index = bisect.bisect_right([r.started_at for r in candidates], image.created_at)
            run = candidates[index - 1] if index else None
        if run is None:
            unaccounted.append(image)
        else:
            found[(run.server_id, run.scheduled_for)].append(image)
    return found, unaccounted


def judge_periods(
    schedules: list[ScheduleRow],
    runs: list[RunRow],
    images: dict[Period, list[SeenImage]],
    window: Window,
) -> tuple[dict, list[float], list[str]]:
    final = {state.value for state in FINAL}
    by_period = {(run.server_id, run.scheduled_for): run for run in runs}
    due = done = lost = on_day = weekly_requested = 0
    failed: collections.Counter[str] = collections.Counter()
    lateness: list[float] = []
    lost_lines: list[str] = []
    for schedule in schedules:
        for when in due_occurrences(schedule, window):
            due += 1
            run = by_period.get((schedule.server_id, when))
            state, reason = (run.state, run.reason) if run else (None, None)
            if state == RunState.DONE:
                done += 1
            elif state in final:
                failed[reason or state] += 1
            else:
                lost += 1
                lost_lines.append(
                    f"period {when:%Y-%m-%dT%H:%M:%SZ} of server {schedule.server_id} lost: "
                    f"run {state or 'never made'}"
                )
            requested = images.get((schedule.server_id, when))
            if requested:
                lateness.append((requested[0].created_at - when).total_seconds())
                if schedule.day_of_week is not None:
                    weekly_requested += 1
                    on_day += requested[0].created_at.weekday() == schedule.day_of_week
    figures = {
        "periods_due": due,
        "periods_done": done,
        "periods_lost": lost,
        "runs_failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items())),
        "on_day_share": round(on_day / weekly_requested, 4) if weekly_requested else None,
    }
    return figures, lateness, lost_lines


def duplicates(images: dict[Period, list[SeenImage]], unaccounted: list[SeenImage]) -> int:
    """Periods with more than one image not ended in ERROR, and images not ended in ERROR
    that no run accounts for (each one more than its period needed)."""
    doubled = sum(1 for found in images.values() if sum(i.fate != ERROR for i in found) > 1)
    return doubled + sum(i.fate != ERROR for i in unaccounted)


def retention_violations(
    session: orm.Session,
    schedules: list[ScheduleRow],
    own_images: dict[str, str],
    now: dt.datetime,
) -> tuple[int, list[str]]:
    """Servers left with more scheduled ACTIVE images than their retention, and images of the
    users' own that are gone; with a line on each.

    A server with a run still open is left out: its prune is still to come.
    """
    open_runs = set(
        session.scalars(
            sa.text("SELECT DISTINCT server_id FROM runs WHERE state = ANY(:open)"),
            {"open": sorted(OPEN)},
        )
    )
    counts = dict(
        session.execute(
            sa.text(
                """
                SELECT server_id, count(*) FROM sim_images
                WHERE fate = :active AND done_at <= :now
                  AND metadata ->> :by = :service AND metadata ->> :server = server_id
                GROUP BY server_id
                """
            ),
            {
                "active": ACTIVE,
                "now": now,
                "by": CREATED_BY_KEY,
                "service": CREATED_BY_VALUE,
                "server": INSTANCE_UUID_KEY,
            },
        ).all()
    )
    lines = [
        f"server {s.server_id}: {counts[s.server_id]} scheduled ACTIVE, retention {s.retention}"
        for s in schedules
        if counts.get(s.server_id, 0) > s.retention and s.server_id not in open_runs
    ]
    present = set(
        session.scalars(
            sa.text("SELECT id FROM sim_images WHERE id = ANY(:ids)"), {"ids": list(own_images)}
        )
    )
    lines += [f"{kind} image {i} deleted" for i, kind in own_images.items() if i not in present]
    return len(lines), lines


def planned_load(schedules: list[ScheduleRow], window: Window) -> list[tuple[dt.datetime, float]]:
    """Images the plan expects in flight at each minute of the soak."""
    minutes = int((window.end - window.start) / dt.timedelta(minutes=1))
    change = np.zeros(minutes + 1)
    for schedule in schedules:
        for when in due_occurrences(schedule, window):
            first = (when - window.start).total_seconds() / 60
            change[int(first)] += 1
            change[min(int(np.ceil(first + schedule.expected_s / 60)), minutes)] -= 1
    load = np.cumsum(change)[:minutes]
    return [(window.start + dt.timedelta(minutes=k), float(v)) for k, v in enumerate(load)]


def judge(
    sessions: orm.sessionmaker[orm.Session],
    recorded: list[SeenImage],
    samples: list[tuple[dt.datetime, int]],
    own_images: dict[str, str],
    window: Window,
    cap: int,
    now: dt.datetime,
    planned: list[ScheduleRow],
) -> tuple[Judged, list[str]]:
    """`planned`: the schedules as planned (their durations then, not those learnt since)."""
    with sessions() as session:
        schedules = load_schedules(session)
        runs = load_runs(session)
        violations, lines = retention_violations(session, schedules, own_images, now)
    images, unaccounted = images_by_period(recorded, runs)
    figures, lateness, lost = judge_periods(schedules, runs, images, window)
    in_flight = [count for _, count in samples]
    figures.update(
        duplicate_images=duplicates(images, unaccounted),
        cap_violations=sum(count > cap for count in in_flight),
        max_in_flight=max(in_flight, default=0),
        retention_violations=violations,
    )
    return Judged(figures, lateness, planned_load(planned, window)), lost + lines
