"""Who is an operator under Keystone (API.md): the role admin on an operator project, not on
any project. A customer who administers their own project stays inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from api.auth.keystone import KeystoneAuth
from tests.conftest import ServedApp
from tests.standins.openstack_cloud import OpenStackCloud


@pytest.fixture
def keystone() -> Iterator[OpenStackCloud]:
    with OpenStackCloud() as cloud:
        yield cloud


@pytest.fixture
def operators(keystone: OpenStackCloud) -> str:
    return keystone.add_project("operators")


@pytest.fixture
def served(settings, sessions, keystone, operators) -> Iterator[ServedApp]:  # type: ignore[no-untyped-def]
    from api import create_app

    auth = KeystoneAuth(**keystone.admin_credentials, operator_projects=[operators])
    app = create_app(settings, sessions=sessions, auth=auth)
    served = ServedApp(app)
    yield served
    served.stop()


def _get(served: ServedApp, path: str, token: str) -> requests.Response:
    return requests.get(f"{served.base}{path}", headers={"X-Auth-Token": token}, timeout=10)


def test_a_customers_project_admin_is_a_creator_of_that_project_alone(served, keystone) -> None:  # type: ignore[no-untyped-def]
    customer, other = keystone.add_project("customer"), keystone.add_project("other")
    token = keystone.issue_token(customer, ["admin"])

    assert _get(served, f"/v2/{customer}/rax-si-image-schedules", token).status_code == 200
    refused = _get(served, f"/v2/{other}/rax-si-image-schedules", token)
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"].endswith(f"tenant {other}")
    assert _get(served, "/admin/v1/cap", token).status_code == 403
    assert _get(served, "/admin/v1/runs/summary", token).status_code == 403


def test_an_admin_of_an_operator_project_is_an_operator(served, keystone, operators) -> None:  # type: ignore[no-untyped-def]
    customer = keystone.add_project("customer")
    token = keystone.issue_token(operators, ["admin"])

    assert _get(served, "/admin/v1/cap", token).status_code == 200
    assert _get(served, f"/v2/{customer}/rax-si-image-schedules", token).status_code == 200


def test_a_reader_of_an_operator_project_is_no_operator(served, keystone, operators) -> None:  # type: ignore[no-untyped-def]
    token = keystone.issue_token(operators, ["reader"])

    assert _get(served, "/admin/v1/cap", token).status_code == 403
    customer = keystone.add_project("customer")
    assert _get(served, f"/v2/{customer}/rax-si-image-schedules", token).status_code == 403


def test_a_system_scoped_admin_is_an_operator(served, keystone) -> None:  # type: ignore[no-untyped-def]
    customer = keystone.add_project("customer")
    token = keystone.issue_system_token(["admin"])

    assert _get(served, "/admin/v1/cap", token).status_code == 200
    assert _get(served, f"/v2/{customer}/rax-si-image-schedules", token).status_code == 200


def test_a_system_scoped_reader_gets_nothing(served, keystone) -> None:  # type: ignore[no-untyped-def]
    token = keystone.issue_system_token(["reader"])

    assert _get(served, "/admin/v1/cap", token).status_code == 401
