"""A pytest plugin for `make mutation`: the unit tests first, so that a mutant they kill ends
the run (-x) before any test makes a database."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "/unit/" not in item.nodeid)
