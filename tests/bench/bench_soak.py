"""Benchmark of the whole service: a soak on a simulated fleet with every fault, its summary
line (runs per real second among it).

    python -m tests.bench.bench_soak [--servers 2000] [--days 2] [--speed 2000]

The full target is `--servers 10000 --tenants 1000 --days 7 --speed 1500`, about nine minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
FAULTS = "kill-workers,redis-restart,postgres-restart,compute-errors"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--days", type=float, default=2)
    parser.add_argument("--speed", type=float, default=2000)
    parser.add_argument("--cap-factor", type=float, default=1.2)
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="si-bench-soak-"))
    # Servers of the soak's own, which it may restart.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    done = subprocess.run(
        [
            str(BIN / "scheduled-images"),
            "soak",
            "--servers",
            str(args.servers),
            "--tenants",
            str(args.tenants),
            "--days",
            f"{args.days:g}",
            "--speed",
            f"{args.speed:g}",
            "--cap-factor",
            f"{args.cap_factor:g}",
            "--faults",
            FAULTS,
            "--report",
            str(report),
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    print(done.stdout.strip())
    summary = report / "summary.json"
    if summary.exists():
        figures = json.loads(summary.read_text())
        print(f"runs per real second: {figures['runs_per_s']}; report in {report}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
