"""summary.json, the soak's verdict, and its one-line form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: The keys of summary.json, in order.
KEYS = (
    "servers",
    "tenants",
    "days",
    "speed",
    "cap",
    "periods_due",
    "periods_done",
    "periods_lost",
    "runs_failed",
    "failed_by_reason",
    "duplicate_images",
    "cap_violations",
    "max_in_flight",
    "lateness_p50_s",
    "lateness_p99_s",
    "lateness_max_s",
    "on_day_share",
    "retention_violations",
    "faults",
    "wall_s",
    "runs_per_s",
    "ok",
)
#: What must be zero for the soak to pass.
MUST_BE_ZERO = ("periods_lost", "duplicate_images", "cap_violations", "retention_violations")


def lateness_figures(lateness_s: list[float]) -> dict:
    if not lateness_s:
        return {"lateness_p50_s": None, "lateness_p99_s": None, "lateness_max_s": None}
    values = np.array(lateness_s)
    return {
        "lateness_p50_s": round(float(np.percentile(values, 50)), 1),
        "lateness_p99_s": round(float(np.percentile(values, 99)), 1),
        "lateness_max_s": round(float(values.max()), 1),
    }


def summary(figures: dict) -> dict:
    """The figures in summary.json's order, with `ok`; a missing or extra key is a bug."""
    ok = all(figures[key] == 0 for key in MUST_BE_ZERO) and figures["periods_due"] > 0
    complete = {**figures, "ok": ok}
    if set(complete) != set(KEYS):
        raise ValueError(f"summary keys differ: {sorted(set(complete) ^ set(KEYS))}")
    return {key: complete[key] for key in KEYS}


def write_summary(directory: Path, content: dict) -> Path:
    path = directory / "summary.json"
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def summary_line(content: dict) -> str:
    return (
        f"soak {'ok' if content['ok'] else 'NOT ok'}: {content['servers']} servers, "
        f"{content['days']:g} days at x{content['speed']:g}, cap {content['cap']}; "
        f"periods {content['periods_done']}/{content['periods_due']} done, "
        f"{content['periods_lost']} lost, {content['runs_failed']} failed; "
        f"duplicates {content['duplicate_images']}, cap violations {content['cap_violations']} "
        f"(max in flight {content['max_in_flight']}), retention violations "
        f"{content['retention_violations']}; lateness p50 {content['lateness_p50_s']} s, "
        f"p99 {content['lateness_p99_s']} s; on day {content['on_day_share']}; "
        f"{len(content['faults'])} faults; {content['wall_s']} s, "
        f"{content['runs_per_s']} runs/s"
    )
