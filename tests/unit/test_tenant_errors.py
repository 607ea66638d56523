"""What a tenant reads of a run's error: a reason and a fixed sentence, never the cloud's text."""

from __future__ import annotations

import pytest

from common.runs import TENANT_ERRORS, Reason, tenant_error


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_sentence_and_hides_the_cloud_text(reason: Reason) -> None:
    shown = tenant_error(reason.value, "HTTP 503 from http://10.0.0.7:9292/v2/images secret-ish")
    assert shown is not None and shown.startswith(f"{reason.value}: ")
    assert "10.0.0.7" not in shown and "secret-ish" not in shown
    assert reason in TENANT_ERRORS


def test_a_refused_create_names_the_status_only() -> None:
    shown = tenant_error("create_error", "create failed: s: HTTP 409: conflict at http://n:8774")
    assert shown == "create_error: the cloud answered 409"


def test_no_error_is_no_error_and_an_unknown_reason_says_nothing_more() -> None:
    assert tenant_error("create_error", None) is None
    assert tenant_error(None, "Traceback ... at http://internal") == (
        "error: the run did not complete"
    )
