"""The metrics helpers that need no server: broker URLs, queue lengths, Flower's password."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from common import metrics
from common.settings import Settings
from workers.flower_cli import flower_basic_auth


def test_a_kombu_socket_url_becomes_a_unix_socket_client() -> None:
    client = metrics.redis_client("redis+socket:///tmp/some/redis.socket")
    assert client.connection_pool.connection_kwargs["path"] == "/tmp/some/redis.socket"
    tcp = metrics.redis_client("redis://127.0.0.1:6390/2")
    assert tcp.connection_pool.connection_kwargs["port"] == 6390
    assert tcp.connection_pool.connection_kwargs["db"] == 2


def test_queue_lengths_are_the_lengths_of_the_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    server = fakeredis.FakeServer()
    fake = fakeredis.FakeRedis(server=server)
    fake.rpush("create", "a", "b", "c")
    fake.rpush("poll", "x")
    monkeypatch.setattr(metrics, "redis_client", lambda url: fakeredis.FakeRedis(server=server))
    assert metrics.queue_lengths("redis://broker", ["tick", "create", "poll"]) == {
        "tick": 0,
        "create": 3,
        "poll": 1,
    }


def test_flower_password_is_the_setting_else_generated_once(tmp_path: Path) -> None:
    settings = Settings.from_env({"STATE_DIR": str(tmp_path)})
    first = flower_basic_auth(settings)
    user, password = first.split(":")
    assert user == "admin" and len(password) >= 12
    assert flower_basic_auth(settings) == first
    assert (tmp_path / "flower-auth").stat().st_mode & 0o077 == 0
    configured = Settings.from_env({"STATE_DIR": str(tmp_path), "FLOWER_BASIC_AUTH": "u:p"})
    assert flower_basic_auth(configured) == "u:p"


def test_the_up_banner_shows_urls_token_and_curl_lines() -> None:
    from scheduled_images.up import DemoTokens, banner

    tokens = DemoTokens("t-user", "t-operator")
    metrics = ["http://h:3/metrics"]
    text = banner("http://h:1", "http://h:2", "admin:pw", metrics, ["srv-1"], tokens)
    assert "http://h:1/docs" in text and "http://h:2" in text and "admin:pw" in text
    assert "http://h:1/metrics" in text and "http://h:3/metrics" in text
    assert "token: t-user" in text and "operator token: t-operator" in text
    assert "curl -s -H 'X-Auth-Token: t-user' http://h:1/v2/demo/servers/srv-1/" in text
    assert "curl -s -H 'X-Auth-Token: t-operator' http://h:1/admin/v1/runs/summary" in text


def test_up_writes_text_logs_to_a_terminal_unless_told_otherwise() -> None:
    from common.settings import Settings
    from scheduled_images.up import for_a_terminal

    settings = Settings.from_env({})
    assert for_a_terminal(settings, {}, tty=True).log_format == "text"
    assert for_a_terminal(settings, {}, tty=False).log_format == "json"
    told = Settings.from_env({"LOG_FORMAT": "json"})
    assert for_a_terminal(told, {"LOG_FORMAT": "json"}, tty=True).log_format == "json"
