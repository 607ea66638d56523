"""Pages of a list answer: the `<name>_links` entry pointing at the next page, OpenStack style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import request, url_for


def page(name: str, items: list[dict], limit: int, last_marker: Any) -> dict:
    """`{name: items}`, plus `{name}_links` with the next page's URL when the page is full.

    The next URL repeats the request's own path arguments and query, with the new marker.
    """
    body: dict[str, Any] = {name: items}
    if len(items) == limit:
        query = {k: v for k, v in request.args.items() if k != "marker"}
        href = url_for(
            request.endpoint or "",
            **(request.view_args or {}),
            **{**query, "limit": limit, "marker": last_marker},
            _external=True,
        )
        body[f"{name}_links"] = [{"rel": "next", "href": href}]
    return body


def last(rows: Sequence[Any], attribute: str) -> Any:
    return getattr(rows[-1], attribute) if rows else None
