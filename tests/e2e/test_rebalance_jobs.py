"""Rebalance jobs for real: the operator API sends a job to a Celery worker on the plan queue,
over a Redis of the test's own; a broker down when it is asked for, and a worker killed
mid-rebalance, leave a job that still runs, once."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa

from common.models import Rebalance, Schedule
from tests.conftest import ServedApp
from tests.support.fleets import crowd
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow

ROOT = {"X-Auth-Token": "root"}
CAP = 4
WAITING_UPDATE = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query LIKE '%UPDATE schedules SET slot_s%'"
)


@pytest.fixture
def operator_api(pipeline, settings, sessions, tokens):  # type: ignore[no-untyped-def]
    """The API, sending to the pipeline's broker; a crowded fleet and a cap it must fit."""
    from api import create_app

    served = ServedApp(
        create_app(settings.replace(broker_url=pipeline.redis.url), sessions=sessions)
    )
    crowd(sessions, 12)
    answer = requests.put(
        f"{served.base}/admin/v1/cap", json={"inflight_cap": CAP}, headers=ROOT, timeout=10
    )
    assert answer.ok, answer.text
    yield served
    served.stop()


def ask(api: ServedApp) -> requests.Response:
    answer = requests.post(f"{api.base}/admin/v1/plan/rebalance", headers=ROOT, timeout=20)
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "queued"
    return answer


def wait_done(api: ServedApp, answer: requests.Response, pipeline, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    url = api.base + answer.headers["Location"]

    def ended() -> dict | None:
        job = requests.get(url, headers=ROOT, timeout=10).json()
        return job if job["state"] in ("done", "failed") else None

    try:
        job = wait_for(ended, timeout, "the rebalance job to end", interval=0.2)
    except AssertionError:
        raise AssertionError(pipeline.logs()) from None
    assert job["state"] == "done", job  # type: ignore[index]
    return job  # type: ignore[return-value]


def planned_peak(api: ServedApp) -> float:
    return requests.get(f"{api.base}/admin/v1/plan", headers=ROOT, timeout=10).json()[
        "planned_peak"
    ]


def test_a_rebalance_job_runs_on_the_plan_worker(pipeline, operator_api) -> None:  # type: ignore[no-untyped-def]
    pipeline.worker(queues="plan", concurrency=1)
    answer = ask(operator_api)
    job = wait_done(operator_api, answer, pipeline)
    assert job["attempts"] == 1 and job["error"] is None
    assert job["summary"]["schedules"] == 12 and job["summary"]["cap"] == CAP
    assert job["summary"]["moved"] > 0 and job["summary"]["peak"] <= CAP
    assert planned_peak(operator_api) <= CAP


def test_a_rebalance_asked_for_while_the_broker_is_down_runs_when_it_is_back(
    pipeline, operator_api
) -> None:  # type: ignore[no-untyped-def]
    pipeline.redis.stop()
    answer = ask(operator_api)
    pipeline.redis.start()
    # Nothing reached the broker: the tick finds the job in PostgreSQL and sends it.
    pipeline.worker(queues="tick,plan", concurrency=1)
    pipeline.beat()
    job = wait_done(operator_api, answer, pipeline)
    assert job["attempts"] == 1
    assert planned_peak(operator_api) <= CAP


def test_a_worker_killed_mid_rebalance_leaves_the_job_to_run_again(
    pipeline, operator_api, engine
) -> None:  # type: ignore[no-untyped-def]
    before = planned_peak(operator_api)
    # Row locks on every schedule hold the worker at its UPDATE, mid-rebalance.
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.select(Schedule.id).with_for_update())
    first = pipeline.worker(queues="plan", concurrency=1)
    answer = ask(operator_api)

    def held_at_its_update() -> bool:
        with pipeline.sessions() as session:
            return bool(session.scalar(WAITING_UPDATE))

    wait_for(held_at_its_update, 30, "the worker to wait at its UPDATE", interval=0.2)
    first.kill()
    blocker.rollback()
    blocker.close()
    assert planned_peak(operator_api) == before  # nothing of the lost attempt was kept
    with pipeline.sessions() as session:
        assert session.scalar(sa.select(Rebalance.state)) == "running"

    pipeline.worker(queues="tick,plan", concurrency=1)
    pipeline.beat()
    job = wait_done(operator_api, answer, pipeline)
    assert job["attempts"] == 2
    assert job["summary"]["moved"] > 0 and job["summary"]["peak"] <= CAP
    assert planned_peak(operator_api) <= CAP
    with pipeline.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Rebalance)) == 1
