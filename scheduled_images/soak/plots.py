"""The soak's pictures: images in flight against the cap and the plan, and the lateness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_load(
    path: Path,
    samples: list[tuple[dt.datetime, int]],
    planned: list[tuple[dt.datetime, float]],
    cap: int,
    start: dt.datetime,
) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 3.2), dpi=90)
    day = dt.timedelta(days=1)
    axes.plot(
        [(t - start) / day for t, _ in planned],
        [v for _, v in planned],
        lw=0.8,
        color="tab:gray",
        label="planned",
    )
    axes.plot(
        [(t - start) / day for t, _ in samples],
        [v for _, v in samples],
        lw=0.6,
        color="tab:blue",
        label="in flight (cloud)",
    )
    axes.axhline(cap, color="tab:red", lw=1, ls="--", label=f"cap {cap}")
    axes.set_xlabel("simulated day")
    axes.set_ylabel("images in progress")
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_lateness(path: Path, lateness_s: list[float]) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=90)
    axes.hist([s / 60 for s in lateness_s] or [0], bins=60, color="tab:blue")
    axes.set_xlabel("minutes from the planned slot to the image request (simulated)")
    axes.set_ylabel("periods")
    axes.set_yscale("log")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
