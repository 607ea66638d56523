"""A webhook receiver on loopback for the tests: it checks each event's signature and
CloudEvents attributes, keeps what it got, and answers what the test tells it to."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

#: What every CloudEvent this service sends must carry.
CLOUDEVENT_ATTRIBUTES = {"specversion", "id", "source", "type", "subject", "time"}


class Received:
    """One request the receiver got."""

    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path, self.headers, self.body = path, headers, body

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1. `answers` are the statuses of the next POSTs, in
    order (then 200); a 3xx points at /elsewhere on the same server."""

    def __init__(
        self, secret: str, delay_s: float = 0.0, tls: tuple[str, str] | None = None
    ) -> None:
        self.secret = secret
        self.delay_s = delay_s
        self.answers: list[int] = []
        self.received: list[Received] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.received if r.path == "/hook"]

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.events()) >= count:
                return self.events()
            time.sleep(0.1)
        raise AssertionError(f"{count} events expected, got {self.events()}")

    def _take(self, request: Received) -> int:
        with self._lock:
            self.received.append(request)
            self.problems.extend(self._check(request))
            return self.answers.pop(0) if self.answers else 200

    def _check(self, request: Received) -> list[str]:
        problems = []
        expected = (
            "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(request.headers.get("x-si-signature", ""), expected):
            problems.append(f"bad signature on {request.path}")
        event = request.event
        if not set(event) >= CLOUDEVENT_ATTRIBUTES or event["specversion"] != "1.0":
            problems.append(f"not a CloudEvent: {event}")
        if not request.headers.get("content-type", "").startswith("application/cloudevents+json"):
            problems.append(f"content type {request.headers.get('content-type')}")
        return problems

    def _handler(self) -> Callable[..., http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._take(Received(self.path, headers, body))
                time.sleep(receiver.delay_s)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
