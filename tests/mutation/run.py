"""Mutation testing of the rule modules: do their tests fail when a rule is broken?

    python tests/mutation/run.py [MODULE ...]     (what `make mutation` runs)

Each module of modules.toml is mutated on its own, against its own fast tests: mutmut's
mutants of its files, then the rewrites mutmut cannot make (SQL text, module-level sets),
each run on a copy of the tree. Then the table: each module's mutants, those killed, the
survivors set aside as equivalent (equivalent.toml, each with its reason) and the score; and
every other survivor, as a diff. Exits 1 when a module scores under TARGET.

Run as a script, never imported from `tests`: mutmut's children import the test modules
from their copy of the tree, and a `tests` package already loaded from here would clash.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: Where each module's results and logs go (mutmut keeps its own in `mutants/`).
OUT = ROOT / ".mutation"
#: The score every module must reach once equivalent mutants are set aside.
TARGET = 0.90
#: What a copy of the tree for a rewrite needs.
TREE = ("common", "scheduler", "workers", "api", "scheduled_images", "tests", "pyproject.toml")


def modules() -> dict[str, dict]:
    return tomllib.loads((HERE / "modules.toml").read_text())


def mutant_globs(spec: dict) -> list[str]:
    """mutmut's names for the module's mutants: `common.slots.x_window__mutmut_3`."""
    default = [f.removesuffix(".py").replace("/", ".") + ".*" for f in spec["files"]]
    return spec.get("mutants", default)


# -- one module, in a child process of its own ----------------------------------------------


def mutate(name: str) -> None:
    """mutmut on the module's files with the module's tests; results to OUT/<name>.json."""
    from mutmut.__main__ import _run
    from mutmut.configuration import config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    spec = modules()[name]
    cfg = config()
    cfg.only_mutate = spec["files"]
    cfg.pytest_add_cli_args_test_selection = spec["tests"]
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    globs = mutant_globs(spec)
    _run(globs, max_children=None)
    results = {}
    for path in spec["files"]:
        data = SourceFileMutationData(path=Path(path))
        data.load()
        for key, code in data.exit_code_by_key.items():
            if any(fnmatch.fnmatchcase(key, g) for g in globs):
                status = status_by_exit_code[code]
                results[key] = {"status": status, "diff": get_diff_for_mutant(key, path=path)}
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=1))


def rewrite_mutants(name: str, spec: dict) -> dict[str, dict]:
    """Each rewrite applied to a copy of the tree, the module's tests run on it."""
    results: dict[str, dict] = {}
    tree = OUT / "tree"
    for index, rewrite in enumerate(spec.get("rewrite", [])):
        shutil.rmtree(tree, ignore_errors=True)
        for part in TREE:
            source = ROOT / part
            copy = shutil.copytree if source.is_dir() else shutil.copy2
            copy(source, tree / part)
        target = tree / rewrite["file"]
        text = target.read_text()
        if text.count(rewrite["old"]) != 1:
            raise SystemExit(f"{name}: rewrite {rewrite['old']!r} does not occur once")
        target.write_text(text.replace(rewrite["old"], rewrite["new"]))
        tests = rewrite.get("tests", spec["tests"])
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(OUT / f"{name}.rewrites.log", "a") as log:
            code = subprocess.call(command, cwd=tree, stdout=log, stderr=log, env=env)
        key = f"{rewrite['file'].removesuffix('.py').replace('/', '.')}.rewrite_{index + 1}"
        diff = f"--- {rewrite['file']}\n+++ {rewrite['file']}\n-{rewrite['old']}\n+{rewrite['new']}"
        results[key] = {"status": "killed" if code else "survived", "diff": diff}
    shutil.rmtree(tree, ignore_errors=True)
    return results


def run_module(name: str, spec: dict) -> None:
    started = time.monotonic()
    print(f"{name}: mutating {', '.join(spec['files'])} against {' '.join(spec['tests'])}")
    with open(OUT / f"{name}.log", "w") as log:
        code = subprocess.call(
            [sys.executable, __file__, "--one", name], cwd=ROOT, stdout=log, stderr=log
        )
    if code != 0 or not (OUT / f"{name}.json").exists():
        raise SystemExit(f"{name}: mutmut failed ({code}); see {OUT / f'{name}.log'}")
    results = json.loads((OUT / f"{name}.json").read_text())
    results.update(rewrite_mutants(name, spec))
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=1))
    print(f"{name}: {len(results)} mutants in {time.monotonic() - started:.0f} s")


@contextlib.contextmanager
def database_template() -> Iterator[None]:
    """One migrated database that each mutant's test run copies instead of migrating its own
    (SI_TEST_DATABASE_TEMPLATE); it and every copy left behind are dropped at the end."""
    sys.path.insert(0, str(ROOT))
    from tests.support.databases import LOCAL_ADMIN_URL, answers, create_migrated, drop

    admin = os.environ.get("TEST_DATABASE_URL", LOCAL_ADMIN_URL)
    if not answers(admin):
        yield  # the embedded server: each run migrates a database of its own
        return
    template = sa.make_url(create_migrated(admin, "si_mutation")).database
    os.environ["SI_TEST_DATABASE_TEMPLATE"] = template
    try:
        yield
    finally:
        engine = sa.create_engine(admin)
        with engine.connect() as connection:
            names = connection.scalars(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE :copies"),
                {"copies": f"{template}_%"},
            ).all()
        engine.dispose()
        for name in [*names, template]:
            drop(admin, sa.make_url(admin).set(database=name).render_as_string(False))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        mutate(argv[1])
        return 0
    from report import report  # beside this file, which is sys.path[0]

    chosen = modules()
    names = argv or list(chosen)
    OUT.mkdir(exist_ok=True)
    # pytest's temporary folders apart from any other run's on the machine.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(OUT / "tmp"))
    os.environ["HYPOTHESIS_PROFILE"] = "mutation"
    (OUT / "tmp").mkdir(exist_ok=True)
    started = time.monotonic()
    with database_template():
        for name in names:
            (OUT / f"{name}.rewrites.log").unlink(missing_ok=True)
            run_module(name, chosen[name])
    print(f"\n{len(names)} modules in {(time.monotonic() - started) / 60:.1f} min")
    return report(OUT, names, TARGET)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
