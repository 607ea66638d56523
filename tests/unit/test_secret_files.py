"""Files holding secrets are the owner's alone from the moment they exist."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from api.auth.static import add_token
from common.secret_files import write_private
from common.settings import Settings
from workers.flower_cli import flower_basic_auth


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_private(tmp_path / "key", "s3cr3t")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "key") == 0o600
    assert (tmp_path / "key").read_text() == "s3cr3t"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_replacing_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert _mode(path) == 0o600 and path.read_text() == "new"


def test_the_tokens_file_is_private(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        add_token(tmp_path / "tokens.json", "t0k3n-abc", "t1", ["creator"])
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "tokens.json") == 0o600
    assert json.loads((tmp_path / "tokens.json").read_text())["t0k3n-abc"]["tenant"] == "t1"


def test_flowers_generated_password_is_random_and_private(tmp_path: Path) -> None:
    first = flower_basic_auth(Settings.from_env({"STATE_DIR": str(tmp_path / "a")}))
    second = flower_basic_auth(Settings.from_env({"STATE_DIR": str(tmp_path / "b")}))
    assert first != second and first.startswith("admin:") and len(first) > 20
    assert _mode(tmp_path / "a" / "flower-auth") == 0o600
    # Kept: the next start uses the same one.
    assert flower_basic_auth(Settings.from_env({"STATE_DIR": str(tmp_path / "a")})) == first


def test_up_makes_random_demo_tokens_once_and_drops_the_well_known_ones(tmp_path: Path) -> None:
    from scheduled_images.up import demo_tokens

    settings = Settings.from_env({"STATE_DIR": str(tmp_path)})
    # A state folder from before: the fixed tokens everybody could read in the docs.
    add_token(settings.auth_tokens_file, "demo-token", "demo", ["creator"])
    add_token(settings.auth_tokens_file, "demo-admin-token", "operators", ["admin"])
    made = demo_tokens(settings)
    stored = json.loads(settings.auth_tokens_file.read_text())
    assert "demo-token" not in stored and "demo-admin-token" not in stored
    assert stored[made.tenant] == {"tenant": "demo", "roles": ["creator"]}
    assert stored[made.operator] == {"tenant": "operators", "roles": ["admin"]}
    assert len(made.tenant) >= 32 and made.tenant != made.operator
    assert _mode(tmp_path / "demo-tokens.json") == 0o600
    assert demo_tokens(settings) == made
    other = demo_tokens(Settings.from_env({"STATE_DIR": str(tmp_path / "elsewhere")}))
    assert other.tenant != made.tenant
