"""The settings table: one definition gives the object, its parsing and the README's table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.settings import SETTINGS, Settings, SettingsError
from common.settings_cli import markdown_table, settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_settings_table_as_defined() -> None:
    assert markdown_table() in README.read_text(), (
        "README.md's settings table is out of step: paste `scheduled-images settings --markdown`"
    )


def test_every_field_is_a_row_of_the_table() -> None:
    assert [row.name for row in SETTINGS] == [
        field.name.upper() for field in dataclasses.fields(Settings)
    ]


def test_the_defaults_parse() -> None:
    defaults = Settings.from_env({})
    assert defaults.inflight_cap == 50
    assert defaults.auth_tokens_file == defaults.state_dir / "tokens.json"
    assert defaults.state_dir.is_absolute()


def test_a_setting_may_use_those_above_it() -> None:
    parsed = Settings.from_env({"STATE_DIR": "/srv/si", "LOG_LEVEL": "debug"})
    assert parsed.auth_tokens_file == Path("/srv/si/tokens.json")
    assert parsed.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("INFLIGHT_CAP", "0", "INFLIGHT_CAP must be at least 1, not 0"),
        ("INFLIGHT_CAP", "lots", "INFLIGHT_CAP must be an integer, not 'lots'"),
        ("LEASE_S", "-1", "LEASE_S must not be negative, not -1.0"),
        ("LEASE_S", "soon", "LEASE_S must be a number, not 'soon'"),
        ("LOG_FORMAT", "XML", "LOG_FORMAT must be one of json, text, not 'xml'"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == message


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_PASSWORD", "hunter2")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:swordfish")
    shown = CliRunner().invoke(settings, [])
    assert shown.exit_code == 0, shown.output
    assert "OS_PASSWORD=***" in shown.output
    assert "hunter2" not in shown.output and "swordfish" not in shown.output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OS_PASSWORD", "change-me"),
        ("OS_PASSWORD", "Password"),
        ("FLOWER_BASIC_AUTH", "admin:change-me"),
        ("FLOWER_BASIC_AUTH", "admin:changeme"),
        ("DATABASE_URL", "postgresql+psycopg2://si:change-me@db/si"),
        ("BROKER_URL", "redis://:secret@redis:6379/0"),
    ],
)
def test_a_placeholder_secret_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} ha.* placeholder"):
        Settings.from_env({name: value})


def test_real_secrets_pass() -> None:
    parsed = Settings.from_env(
        {
            "OS_PASSWORD": "k3!vN9q",
            "FLOWER_BASIC_AUTH": "admin:Zq81kV3p",
            "DATABASE_URL": "postgresql+psycopg2://si:Xp2k9@db/si",
        }
    )
    assert parsed.os_password == "k3!vN9q"


def test_the_passwords_in_urls_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://si:Xp2k9@db:5432/si")
    monkeypatch.setenv("BROKER_URL", "redis://:R3d1sPw@redis:6379/0")
    shown = CliRunner().invoke(settings, [])
    assert shown.exit_code == 0, shown.output
    assert "DATABASE_URL=postgresql+psycopg2://si:***@db:5432/si" in shown.output
    assert "BROKER_URL=redis://:***@redis:6379/0" in shown.output
    assert "Xp2k9" not in shown.output and "R3d1sPw" not in shown.output


def test_operator_projects_are_a_list() -> None:
    parsed = Settings.from_env({"ADMIN_PROJECT_IDS": " ops-1, ,ops-2 "})
    assert parsed.admin_project_ids == ("ops-1", "ops-2")
    assert Settings.from_env({}).admin_project_ids == ()
