"""The workers' Redis transport closes a channel whose broker died while a BRPOP was in flight
(workers/broker.py): without it the close stops half way and the worker later dies of it."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection, Queue

from tests.support.processes import RedisServer
from workers.broker import Transport


def test_a_channel_whose_broker_died_mid_poll_still_closes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    connection = Connection(server.url, transport=Transport)
    try:
        channel = connection.default_channel
        Queue("images", channel=channel).declare()
        channel.basic_consume("images", False, lambda message: None, "test")
        # The worker's poll loop: a BRPOP sent, its reply not yet read.
        channel.connection.cycle._register_BRPOP(channel)
        assert channel._in_poll
        server.stop()
        channel.close()
        assert channel.closed
    finally:
        server.stop()
        connection.release()
