"""`python -m tests.bench`: every benchmark of the project in turn, each in its own process.

A process each, so one bench's servers, pools and warm caches never colour the next one's
figures. `--only NAME` (api, planner, pipeline, fairness, soak, or the module name) runs just
that one.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

BENCHES = (
    "bench_api",
    "bench_planner",
    "bench_pipeline",
    "bench_limits",
    "bench_fairness",
    "bench_soak",
)


def _present(module: str) -> bool:
    return importlib.util.find_spec(f"tests.bench.{module}") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument(
        "--only", metavar="NAME", help="one bench: api, planner, pipeline, limits, fairness or soak"
    )
    args = parser.parse_args(argv)

    chosen = list(BENCHES)
    if args.only:
        name = args.only if args.only.startswith("bench_") else f"bench_{args.only}"
        if name not in BENCHES:
            parser.error(f"unknown bench {args.only!r}; choose from {', '.join(BENCHES)}")
        chosen = [name]

    failed = []
    for module in chosen:
        if not _present(module):
            print(f"== {module}: not present, skipped", flush=True)
            continue
        print(f"== {module}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"tests.bench.{module}"], check=False)
        print(f"== {module}: exit {result.returncode} in {time.monotonic() - started:.0f} s\n")
        if result.returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
