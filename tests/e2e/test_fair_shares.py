"""Fair shares for real: Celery worker and beat processes admitting tenants' runs under a
small cap, the places each tenant holds sampled every 100 ms from the database."""

from __future__ import annotations

import pytest

from common.db import transaction
from common.runs import RunState
from common.runtime_settings import set_inflight_cap
from tests.support.fairness import (
    ask_run_nows,
    finish_positions,
    full_while_several_wait,
    watch,
)

pytestmark = pytest.mark.slow


def disk_gb(index: int) -> int:
    """30 to 70 GB: 0.6 to 1.4 s an image at the fast clock's 0.02 s a GB, long enough to
    watch, and uneven, so that places free one at a time as they do in a real cloud."""
    return 30 + index * 17 % 41


def ask(pipeline, fleets: dict[str, int]) -> int:  # type: ignore[no-untyped-def]
    return ask_run_nows(pipeline, fleets, disk_gb)


def test_while_tenants_wait_each_holds_an_equal_share(pipeline) -> None:
    # Two tenants, 30 and 10, under a cap of 4: two places each while both wait.
    asked = ask(pipeline, {"big": 30, "small": 10})
    pipeline.worker(concurrency=4, INFLIGHT_CAP="4")
    pipeline.beat(INFLIGHT_CAP="4")
    samples = watch(pipeline.sessions, lambda s: not s.waiting and not s.total, timeout=60)
    judged = full_while_several_wait(samples, cap=4)
    assert len(judged) >= 20, f"too few samples with both waiting: {len(judged)}"
    assert [s for s in judged if s.spread() > 1] == []
    assert {s.held.get("small") for s in judged} == {2}
    # The small tenant's last image finishes about halfway (20th of 40), not at the end.
    assert max(finish_positions(pipeline.sessions)["small"]) <= 24

    # Five tenants of different sizes, the cap raised to 10 at run time: two places each.
    with transaction(pipeline.sessions) as session:
        set_inflight_cap(session, 10)
    asked += ask(pipeline, {"t1": 24, "t2": 16, "t3": 10, "t4": 6, "t5": 4})
    samples = watch(pipeline.sessions, lambda s: not s.waiting and not s.total, timeout=60)
    judged = full_while_several_wait(samples, cap=10)
    assert len(judged) >= 20, f"too few samples with several waiting: {len(judged)}"
    assert [s for s in judged if s.spread() > 1] == []
    assert any(len(s.waiting) == 5 for s in judged)
    runs = pipeline.wait_runs_final(asked, timeout=30)
    assert {r.state for r in runs} == {RunState.DONE}
