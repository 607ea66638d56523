"""The soak's pictures: images in flight against the cap and the plan, and the lateness."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
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
    faults: Sequence[Mapping[str, object]] = (),
) -> None:
    """The load, with each injected fault (`FaultInjector.injected`) marked where it fell:
    the dips it explains."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(10.5, 3.2), dpi=90)
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
    colours = {"kill-workers": "tab:orange", "redis-restart": "tab:purple"}
    marked: set[str] = set()
    for fault in faults:
        kind = str(fault["fault"])
        axes.axvline(
            float(fault["day"]),  # type: ignore[arg-type]
            color=colours.get(kind, "tab:green"),
            lw=1.5,
            ls=(0, (3, 2)),
            zorder=3,
            label=None if kind in marked else kind,
        )
        marked.add(kind)
    axes.set_xlabel("simulated day")
    axes.set_ylabel("images in progress")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
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
