"""The simulated cloud's chance: reproducible from the seed and the image's name, at the
rates asked for."""

from __future__ import annotations

import statistics

from common.compute.simulated import NO_CHANCE, Draws

NAMES = [f"Daily-server-{n}-{1700000000 + n}" for n in range(20000)]


def test_no_chance_changes_nothing() -> None:
    assert NO_CHANCE.duration_factor("x") == 1.0
    assert not NO_CHANCE.create_fails("x")
    assert not NO_CHANCE.image_fails("x")


def test_each_draw_follows_from_the_seed_and_the_name() -> None:
    one, same, other = (
        Draws(0.3, 0.5, 0.5, seed=1),
        Draws(0.3, 0.5, 0.5, seed=1),
        Draws(0.3, 0.5, 0.5, seed=2),
    )
    assert [one.duration_factor(n) for n in NAMES[:50]] == [
        same.duration_factor(n) for n in NAMES[:50]
    ]
    assert [one.create_fails(n) for n in NAMES[:50]] == [same.create_fails(n) for n in NAMES[:50]]
    assert [one.duration_factor(n) for n in NAMES[:50]] != [
        other.duration_factor(n) for n in NAMES[:50]
    ]


def test_rates_and_the_mean_duration_are_those_asked_for() -> None:
    draws = Draws(duration_sigma=0.4, create_error_rate=0.01, image_error_rate=0.005, seed=7)
    factors = [draws.duration_factor(n) for n in NAMES]
    assert abs(statistics.fmean(factors) - 1.0) < 0.02
    assert 0.3 < statistics.pstdev(factors) < 0.5
    assert 0.007 < sum(map(draws.create_fails, NAMES)) / len(NAMES) < 0.013
    assert 0.003 < sum(map(draws.image_fails, NAMES)) / len(NAMES) < 0.007
