"""The workers' Redis transport: kombu's, closing a channel whose broker went away.

kombu's `Channel.close` first reads the reply of a BRPOP in flight. When Redis dies, the
worker may notice on another socket first (the remote-control subscription), so that BRPOP
is still in flight; its read fails and the close stops before it marks the channel closed.
Celery then closes the connection a second time, after detaching the transport from it, and
the channel, still open, tries to put its unacknowledged messages back through a broker
address that is gone: an AttributeError, which the worker treats as unrecoverable. The
worker stops, and with it every tick, while its runs wait in `saving` for ever.
"""

from __future__ import annotations

import contextlib
from queue import Empty

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        if self._in_poll and not self.closed:
            # A reply the dead connection can no longer give is lost with it; the tick
            # publishes again what the database says is waiting.
            with contextlib.suppress(Empty, *self.connection_errors):
                self._brpop_read()
        super().close()


class Transport(redis.Transport):
    Channel = Channel
