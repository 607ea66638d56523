"""The one clock: the wall's at speed 1, a faster one from a stored instant for a soak."""

from __future__ import annotations

import datetime as dt

import pytest

from common import clock as clock_module
from common.clock import Clock
from common.settings import Settings, SettingsError

REAL = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
SIMULATED = dt.datetime(2030, 1, 6, tzinfo=dt.UTC)


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The wall clock, moved by the test."""
    now = [REAL]
    monkeypatch.setattr(clock_module, "utcnow", lambda: now[0])
    return now


def test_at_speed_one_it_is_the_wall_clock(wall: list[dt.datetime]) -> None:
    assert Clock().now() == REAL
    assert Clock()() == REAL


def test_a_faster_clock_runs_speed_seconds_per_real_second_from_its_start(
    wall: list[dt.datetime],
) -> None:
    clock = Clock(60.0, REAL, SIMULATED)
    assert clock.now() == SIMULATED
    wall[0] = REAL + dt.timedelta(seconds=2)
    assert clock.now() == SIMULATED + dt.timedelta(minutes=2)


def test_a_simulated_interval_is_a_real_wait_shorter_by_the_speed() -> None:
    assert Clock(600.0, REAL, SIMULATED).real_seconds(900) == 1.5
    assert Clock().real_seconds(900) == 900


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_a_speed_must_be_above_zero(speed: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        Clock(speed, REAL, SIMULATED)


def test_a_faster_clock_needs_the_instant_it_started() -> None:
    with pytest.raises(ValueError, match="instant"):
        Clock(10.0)


def test_clock_speed_is_refused_with_a_real_cloud() -> None:
    with pytest.raises(SettingsError, match="CLOCK_SPEED.*COMPUTE_DRIVER=simulated"):
        Settings.from_env({"CLOCK_SPEED": "100", "COMPUTE_DRIVER": "openstack"})
    assert Settings.from_env({"CLOCK_SPEED": "100"}).clock_speed == 100


@pytest.mark.parametrize("raw", ["0", "-5", "fast"])
def test_clock_speed_names_a_bad_value(raw: str) -> None:
    with pytest.raises(SettingsError, match="CLOCK_SPEED"):
        Settings.from_env({"CLOCK_SPEED": raw})
