"""The webhook signature: `sha256=` and the hex HMAC-SHA256 of the body under the secret, what
a receiver recomputes to trust an event."""

from __future__ import annotations

import hashlib
import hmac

from common.outbox import SIGNATURE_HEADER, signature

#: Computed once, apart from the service, for the secret and body below.
KNOWN = "sha256=347417520dc133ed0ec912bfc283df3007dbc90c6843efd0a7ddb11214e5a221"


def test_the_signature_is_the_hmac_sha256_of_the_body_under_the_secret() -> None:
    assert signature("at-least-16-chars", b'{"id":"1"}') == KNOWN
    assert SIGNATURE_HEADER == "X-SI-Signature"


def test_a_receiver_recomputing_it_with_the_secret_agrees_and_any_change_shows() -> None:
    body, secret = b'{"type":"run.succeeded"}', "a-receivers-secret"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature(secret, body), expected)
    assert signature(secret, body + b" ") != expected
    assert signature(secret + "x", body) != expected
