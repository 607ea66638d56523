"""The embedded PostgreSQL's list of processes sharing it forgets the ones that died."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from common.embedded import forget_dead_handles


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_processes_killed_outright_are_dropped_from_the_list(tmp_path) -> None:
    listed = tmp_path / ".handle_pids.json"
    listed.write_text(json.dumps([_dead_pid(), os.getpid()]))
    forget_dead_handles(tmp_path)
    assert json.loads(listed.read_text()) == [os.getpid()]


def test_a_missing_or_unreadable_list_is_left_alone(tmp_path) -> None:
    forget_dead_handles(tmp_path)
    assert not (tmp_path / ".handle_pids.json").exists()
    (tmp_path / ".handle_pids.json").write_text("not json")
    forget_dead_handles(tmp_path)
    assert (tmp_path / ".handle_pids.json").read_text() == "not json"
