"""The API under gunicorn with several workers: /metrics sums every worker's counts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import requests

from tests.support.processes import ServiceProcess, free_ports, wait_for

pytestmark = pytest.mark.slow
REQUESTS = 60


def _answered(metrics: str) -> float:
    """si_api_requests_total of the healthz endpoint, summed over its labels."""
    pattern = r'si_api_requests_total\{[^}]*endpoint="/healthz"[^}]*\} ([0-9.e+]+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_metrics_add_up_across_gunicorn_workers(database_url: str, tmp_path: Path) -> None:
    port = free_ports(1)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": "",
        "STATE_DIR": str(tmp_path / "state"),
        "API_WORKERS": "3",
        "API_THREADS": "1",
        "LOG_FORMAT": "text",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    api = ServiceProcess(["api", "--port", str(port)], env, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(up, 60, "the API to answer")
        before = _answered(requests.get(f"{base}/metrics", timeout=10).text)
        # New connections, so the requests spread over the workers.
        for _ in range(REQUESTS):
            assert requests.get(f"{base}/healthz", timeout=5, headers={"Connection": "close"}).ok
        scrapes = [_answered(requests.get(f"{base}/metrics", timeout=10).text) for _ in range(6)]
        # Every scrape, whichever worker answers it, sees them all.
        assert all(after - before >= REQUESTS for after in scrapes), (before, scrapes)
    finally:
        api.stop()
