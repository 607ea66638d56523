"""The table `make mutation` prints: each module's score, and each survivor not set aside."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILLED = ("killed", "timeout", "segfault", "caught by type check")


def mutated_lines(diff: str) -> str:
    """What a mutant wrote: its diff's added lines, stripped; the key of equivalent.toml."""
    lines = diff.splitlines()
    return "\n".join(
        line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")
    )


def function_of(key: str) -> str:
    """`common.slots.x_window__mutmut_3` -> `common.slots.x_window`."""
    return re.sub(r"__mutmut_\d+$", "", key)


def equivalents() -> list[dict]:
    return tomllib.loads((HERE / "equivalent.toml").read_text()).get("mutant", [])


def is_listed(key: str, diff: str, listed: list[dict], used: set[int]) -> bool:
    for index, entry in enumerate(listed):
        if entry["function"] == function_of(key) and entry["mutated"] == mutated_lines(diff):
            used.add(index)
            return True
    return False


def report(out: Path, names: list[str], target: float) -> int:
    listed, used = equivalents(), set()
    rows, survivors, short = [], [], []
    for name in names:
        results = json.loads((out / f"{name}.json").read_text())
        killed = sum(r["status"] in KILLED for r in results.values())
        alive = {k: r for k, r in results.items() if r["status"] not in KILLED}
        set_aside = {k for k, r in alive.items() if is_listed(k, r["diff"], listed, used)}
        counted = len(results) - len(set_aside)
        score = killed / counted if counted else 1.0
        rows.append(f"| {name} | {len(results)} | {killed} | {len(set_aside)} | {score:.0%} |")
        survivors += [(k, r) for k, r in sorted(alive.items()) if k not in set_aside]
        if score < target:
            short.append(name)
    print("\n| module | mutants | killed | equivalent | score |\n|---|---|---|---|---|")
    print("\n".join(rows))
    for key, result in survivors:
        print(f"\n{key}: {result['status']}\n{result['diff']}")
    stale = [e for i, e in enumerate(listed) if i not in used and _module_ran(e, names)]
    for entry in stale:
        print(f"\nequivalent.toml lists a mutant no longer made: {entry['function']}")
    if short:
        print(f"\nunder {target:.0%}: {', '.join(short)}")
    return 1 if short else 0


def _module_ran(entry: dict, names: list[str]) -> bool:
    return entry.get("module") in names
