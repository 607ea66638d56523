"""Rate limits (API.md "Limits") counted in a real Redis, shared by two API processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import Client, ServedApp
from tests.support.processes import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def two_apis(settings, sessions, tokens, redis_server) -> Iterator[list[ServedApp]]:  # type: ignore[no-untyped-def]
    from api import create_app

    limited = settings.replace(
        broker_url=redis_server.url,
        tenant_write_limit="5 per minute",
        auth_failure_limit="3/minute",
    )
    served = [ServedApp(create_app(limited, sessions=sessions)) for _ in range(2)]
    yield served
    for one in served:
        one.stop()


def test_a_tenants_writes_are_limited_across_processes(two_apis, cloud) -> None:  # type: ignore[no-untyped-def]
    server_a, server_b = cloud.add_servers("tenant-a", 1)[0], cloud.add_servers("tenant-b", 1)[0]
    alice = [Client(api.base, "alice", "tenant-a") for api in two_apis]
    for number in range(5):
        retention = {"image_schedule": {"retention": number + 1}}
        assert alice[number % 2].post_schedule(server_a, retention).status_code == 200

    refused = alice[1].post_schedule(server_a, {"image_schedule": {"retention": 9}})

    assert refused.status_code == 429
    wait = refused.headers["Retry-After"]
    assert 1 <= int(wait) <= 60
    assert refused.json() == {
        "overLimit": {
            "message": refused.json()["overLimit"]["message"],
            "code": 429,
            "retryAfter": wait,
        }
    }
    # Changed nothing; reading is not limited; another tenant is not held back.
    kept = alice[0].get_schedule(server_a)
    assert kept.status_code == 200 and kept.json()["image_schedule"]["retention"] == 5
    bob = Client(two_apis[1].base, "bob", "tenant-b")
    assert bob.post_schedule(server_b, {"image_schedule": {"retention": 1}}).status_code == 200


def test_failed_authentications_are_limited_per_client(two_apis, cloud) -> None:  # type: ignore[no-untyped-def]
    server = cloud.add_servers("tenant-a", 1)[0]
    good = [Client(api.base, "alice", "tenant-a") for api in two_apis]
    for number in range(10):  # answers that are not 401 cost nothing
        assert good[number % 2].get_schedule(server).status_code == 404
    for number in range(3):
        guess = good[number % 2].as_token(f"guess-{number}")
        assert guess.get_schedule(server).status_code == 401

    refused = good[1].as_token("guess-4").get_schedule(server)

    assert refused.status_code == 429
    assert "Retry-After" in refused.headers and "overLimit" in refused.json()


def test_a_known_token_and_the_probes_pass_a_client_over_its_failure_limit(two_apis, cloud) -> None:  # type: ignore[no-untyped-def]
    server = cloud.add_servers("tenant-a", 1)[0]
    alice = Client(two_apis[0].base, "alice", "tenant-a")
    for number in range(3):
        assert alice.as_token(f"guess-{number}").get_schedule(server).status_code == 401
    assert alice.as_token("guess-4").get_schedule(server).status_code == 429

    # Neither can fail authentication: the failures counted so far have nothing to hold back.
    assert alice.get_schedule(server).status_code == 404
    assert alice.post_schedule(server, {"image_schedule": {"retention": 2}}).status_code == 200
    assert alice.as_token(None).request("GET", alice.url("/healthz")).status_code == 200
    assert alice.as_token("guess-5").get_schedule(server).status_code == 429


def _commands(server: RedisServer) -> int:
    """Commands the Redis has run, other than the INFO calls that count them."""
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def test_reads_that_cannot_fail_authentication_cost_no_round_trip_to_redis(
    two_apis, cloud, redis_server
) -> None:  # type: ignore[no-untyped-def]
    server = cloud.add_servers("tenant-a", 1)[0]
    alice = Client(two_apis[0].base, "alice", "tenant-a")
    assert alice.post_schedule(server, {"image_schedule": {"retention": 2}}).status_code == 200
    before = _commands(redis_server)

    for _ in range(5):
        assert alice.get_schedule(server).status_code == 200
        assert alice.as_token(None).request("GET", alice.url("/healthz")).status_code == 200
    assert _commands(redis_server) == before

    # Writes and unknown tokens are still counted there.
    assert alice.post_schedule(server, {"image_schedule": {"retention": 3}}).status_code == 200
    after_write = _commands(redis_server)
    assert after_write > before
    assert alice.as_token("guess").get_schedule(server).status_code == 401
    assert _commands(redis_server) > after_write


def test_without_redis_the_limits_hold_in_the_process(settings, sessions, tokens, cloud) -> None:  # type: ignore[no-untyped-def]
    from api import create_app

    app = create_app(settings.replace(tenant_write_limit="2 per minute"), sessions=sessions)
    served = ServedApp(app)
    try:
        server = cloud.add_servers("tenant-a", 1)[0]
        alice = Client(served.base, "alice", "tenant-a")
        answers = [
            alice.post_schedule(server, {"image_schedule": {"retention": 1}}).status_code
            for _ in range(3)
        ]
        assert answers == [200, 200, 429]
        assert requests.get(f"{served.base}/healthz", timeout=5).status_code == 200
    finally:
        served.stop()
