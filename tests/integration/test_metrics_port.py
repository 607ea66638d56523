"""API_METRICS_PORT: /metrics on a port of its own, and only there."""

from __future__ import annotations

import requests

from tests.conftest import ServedApp
from tests.support.processes import free_ports


def test_metrics_are_served_on_their_own_port_only(settings, sessions, tokens) -> None:  # type: ignore[no-untyped-def]
    from api import create_app

    port = free_ports(1)
    app = create_app(settings.replace(api_metrics_port=port), sessions=sessions)
    public, private = ServedApp(app), ServedApp(app, port)
    try:
        assert private.base.endswith(f":{port}")
        scraped = requests.get(f"{private.base}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert "si_api_requests_total" in scraped.text

        hidden = requests.get(f"{public.base}/metrics", timeout=5)
        assert hidden.status_code == 404
        assert "si_" not in hidden.text and "itemNotFound" in hidden.text
        # The metrics port serves nothing else, so exposing it to Prometheus exposes no API.
        assert requests.get(f"{private.base}/healthz", timeout=5).status_code == 404
        tenant = requests.get(
            f"{private.base}/v2/tenant-a/rax-si-image-schedules",
            headers={"X-Auth-Token": "alice"},
            timeout=5,
        )
        assert tenant.status_code == 404
        assert requests.get(f"{public.base}/healthz", timeout=5).status_code == 200
    finally:
        public.stop()
        private.stop()


def test_without_the_setting_metrics_stay_on_the_api_port(api_server) -> None:  # type: ignore[no-untyped-def]
    assert requests.get(f"{api_server.base}/metrics", timeout=5).status_code == 200
