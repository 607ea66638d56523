"""`scheduled-images simulate`: a plan from a fleet file, and clear errors for bad files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.days import day_number
from common.slots import in_window
from scheduler.simulate import simulate

GOOD = """server_id,tenant_id,day_of_week,expected_duration_s
s1,t1,,600
s2,t1,SUNDAY,1800
s3,t2,sunday,3600
s4,t2,Monday,120
s5,t3,,7200
"""


def run(  # type: ignore[no-untyped-def]
    tmp_path: Path, fleet: str | bytes, *extra: str, capacity: str = "3", out: Path | None = None
):
    (tmp_path / "fleet.csv").write_bytes(fleet.encode() if isinstance(fleet, str) else fleet)
    out = out or tmp_path / "plan.csv"
    result = CliRunner().invoke(
        simulate,
        ["--fleet", str(tmp_path / "fleet.csv"), "--capacity", capacity, "--out", str(out), *extra],
    )
    return result, out


def test_plans_a_fleet_and_draws_it(tmp_path: Path) -> None:
    result, out = run(tmp_path, GOOD, "--plot", str(tmp_path / "load.png"))
    assert result.exit_code == 0, result.output
    for label in ("planned peak", "lower bound", "peak / lower bound", "on chosen day"):
        assert label in result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["server_id"] for r in rows] == ["s1", "s2", "s3", "s4", "s5"]
    fleet = list(csv.DictReader((tmp_path / "fleet.csv").open()))
    for row, plan in zip(fleet, rows, strict=True):
        day = day_number(row["day_of_week"]) if row["day_of_week"] else None
        assert in_window(day, int(plan["slot_s"]))
    assert (tmp_path / "load.png").stat().st_size > 10_000
    # What it did while planning, on stderr: each stage with the seconds so far.
    assert re.search(r"\d+\.\d s  placing 5 schedules day by day under 3", result.stderr)


@pytest.mark.parametrize(
    ("fleet", "line", "words"),
    [
        ("server_id,tenant_id,expected_duration_s\ns1,t1,60\n", 1, "day_of_week"),
        (GOOD + "s6,t1,FUNDAY,60\n", 7, "FUNDAY"),
        (GOOD + "s6,t1,,-5\n", 7, "non-negative"),
        (GOOD + "s6,t1,,soon\n", 7, "not a number"),
        (GOOD + "s1,t9,,60\n", 7, "duplicate"),
        ("", 1, "empty"),
        (GOOD.replace("expected_duration_s\n", "expected_duration_s,tenant_id\n"), 1, "twice"),
        (GOOD.encode() + "s\u00e96,t1,,60\n".encode("latin-1"), 7, "not UTF-8"),
    ],
)
def test_rejects_a_bad_fleet_naming_the_line(tmp_path: Path, fleet, line, words) -> None:
    result, out = run(tmp_path, fleet)
    assert result.exit_code != 0
    assert f"line {line}" in result.output
    assert words in result.output
    assert not out.exists()


def test_header_only_is_an_error(tmp_path: Path) -> None:
    result, out = run(tmp_path, "server_id,tenant_id,day_of_week,expected_duration_s\n")
    assert result.exit_code != 0 and "no schedules" in result.output
    assert not out.exists()


@pytest.mark.parametrize("capacity", ["nan", "inf", "-1", "0", "many"])
def test_rejects_a_capacity_that_is_not_a_positive_number(tmp_path: Path, capacity) -> None:
    result, out = run(tmp_path, GOOD, capacity=capacity)
    assert result.exit_code == 2, result.output
    assert "--capacity" in result.output
    assert not out.exists()


def test_an_output_it_cannot_write_is_named_before_planning(tmp_path: Path) -> None:
    result, out = run(tmp_path, GOOD, out=tmp_path / "no such folder" / "plan.csv")
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and "no such folder" in result.output
    result, out = run(tmp_path, GOOD, "--plot", str(tmp_path / "load.xyz"))
    assert result.exit_code == 2, result.output
    assert "--plot" in result.output and "png" in result.output
    assert not out.exists()


def test_replays_the_plan_beside_the_random_hour_plan(tmp_path: Path) -> None:
    result, _ = run(tmp_path, GOOD, "--noise", "0.6", "--weeks", "2")
    assert result.exit_code == 0, result.output
    replayed = result.output[result.output.index("replay:") :]
    assert "2 weeks" in replayed and "log-sd 0.6" in replayed
    for name in ("this plan:", "random hour (QonoS):"):
        line = replayed[replayed.index(name) :].splitlines()
        assert re.search(r"p50 [\d.]+ min, p99 [\d.]+ min, max [\d.]+ min", line[0])
        assert re.search(r"headroom: images may run [\d.]+ x", line[1])


def test_no_replay_with_zero_weeks_and_a_bad_noise_is_named(tmp_path: Path) -> None:
    result, _ = run(tmp_path, GOOD, "--weeks", "0")
    assert result.exit_code == 0 and "replay:" not in result.output
    result, out = run(tmp_path, GOOD, "--noise", "-1", out=tmp_path / "other.csv")
    assert result.exit_code == 2 and "--noise" in result.output and not out.exists()
