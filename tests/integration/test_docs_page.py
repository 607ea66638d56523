"""The docs page works offline: every script and style it loads comes from the service."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import requests


def test_every_asset_of_the_docs_page_is_served_by_the_service(api_server) -> None:  # type: ignore[no-untyped-def]
    page = requests.get(f"{api_server.base}/docs", timeout=5)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 3, page.text
    for asset in assets:
        url = urljoin(f"{api_server.base}/docs", asset)
        assert urlsplit(url).netloc == urlsplit(api_server.base).netloc, f"{asset} is off-site"
        answer = requests.get(url, timeout=5)
        assert answer.status_code == 200, url
        assert len(answer.content) > 1000, url
    bundle = requests.get(f"{api_server.base}/docs/assets/swagger-ui-bundle.js", timeout=5)
    assert "SwaggerUIBundle" in bundle.text
    assert "/openapi.json" in page.text
