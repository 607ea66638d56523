"""Fuzz the API from its own OpenAPI document with schemathesis, over a real socket.

Generated requests carry a valid token and, much of the time, a path that names the token's
tenant and a server that exists there (with or without a schedule), so that the fuzzing gets
past authorization into body and query validation. Whatever it sends, the API must never
answer 500 and must answer as its document says.
"""

from __future__ import annotations

import ipaddress

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from common.destinations import RefusedDestination
from tests.conftest import ServedApp

TENANT = "tenant-a"
SCHEDULE = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule"
SCHEDULES = "/v2/{tenant_id}/rax-si-image-schedules"
RUNS = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule/runs"
PAUSE = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule/pause"
RESUME = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule/resume"
IMAGES = "/v2/{tenant_id}/servers/{server_id}/rax-si-image-schedule/images"
WEBHOOK = "/v2/{tenant_id}/rax-si-webhook"
PROBES = ["/healthz", "/readyz", "/metrics"]
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Negative cases only where there is a body or a query to spoil: the token is fixed and
# schemathesis cannot send a path parameter that breaks its schema, so it would find none.
FUZZED = [
    ("GET", SCHEDULE, POSITIVE),
    ("POST", SCHEDULE, POSITIVE),
    ("POST", SCHEDULE, NEGATIVE),
    ("DELETE", SCHEDULE, POSITIVE),
    ("GET", SCHEDULES, POSITIVE),
    ("GET", SCHEDULES, NEGATIVE),
    ("GET", RUNS, POSITIVE),
    ("GET", RUNS, NEGATIVE),
    ("POST", RUNS, POSITIVE),
    ("POST", PAUSE, POSITIVE),
    ("POST", RESUME, POSITIVE),
    ("GET", IMAGES, POSITIVE),
    ("GET", WEBHOOK, POSITIVE),
    ("PUT", WEBHOOK, POSITIVE),
    ("PUT", WEBHOOK, NEGATIVE),
    ("DELETE", WEBHOOK, POSITIVE),
    ("GET", WEBHOOK + "/deliveries", POSITIVE),
    ("GET", WEBHOOK + "/deliveries", NEGATIVE),
    ("GET", "/admin/v1/cap", POSITIVE),
    ("PUT", "/admin/v1/cap", POSITIVE),
    ("PUT", "/admin/v1/cap", NEGATIVE),
    ("GET", "/admin/v1/tenant-inflight-max", POSITIVE),
    ("PUT", "/admin/v1/tenant-inflight-max", POSITIVE),
    ("PUT", "/admin/v1/tenant-inflight-max", NEGATIVE),
    ("GET", "/admin/v1/runs", POSITIVE),
    ("GET", "/admin/v1/runs", NEGATIVE),
    ("GET", "/admin/v1/runs/summary", POSITIVE),
    ("GET", "/admin/v1/plan", POSITIVE),
    ("POST", "/admin/v1/plan/rebalance", POSITIVE),
    ("GET", "/admin/v1/plan/rebalances/{job_id}", POSITIVE),
]
# Enough to reach every validation branch of these small bodies; the whole file stays well
# under a minute on two cores. derandomize makes every run (and CI) draw the same cases.
EXAMPLES = 40
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]


def _no_dns(host: str, port: int) -> list[str]:
    """Addresses written as such, and no lookup of generated names: each would cost a trip to
    the resolver, which is slow to say that a random name does not exist."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        raise RefusedDestination(f"the host {host} does not resolve") from None


@pytest.fixture
def api_server(settings, sessions, tokens):  # type: ignore[no-untyped-def]
    served = ServedApp(create_app(settings, sessions=sessions, resolver=_no_dns))
    yield served
    served.stop()


@pytest.fixture
def schema(api_server):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{api_server.base}/openapi.json")


@pytest.fixture
def servers(cloud, alice) -> list[str]:  # type: ignore[no-untyped-def]
    """Two servers of tenant-a, the first with a weekly schedule, the second with none."""
    scheduled, bare = cloud.add_servers(TENANT, 2)
    answer = alice.post_schedule(
        scheduled, {"image_schedule": {"retention": 3, "day_of_week": "FRIDAY"}}
    )
    assert answer.status_code == 200, answer.text
    return [scheduled, bare]


def _cases(operation, mode: GenerationMode, servers: list[str], token: str) -> st.SearchStrategy:  # type: ignore[no-untyped-def]
    """Cases of every kind: fully generated paths, the right tenant, and existing servers.

    Each entry of the one_of is equally likely, so about half of the cases name an existing
    server of the right tenant and most of the rest the right tenant. The token is fixed, not
    generated: a negative case that only drops it would test nothing but the 401 path.
    """
    headers = {"X-Auth-Token": token}
    names = {parameter.name for parameter in operation.path_parameters}
    paths: list[dict[str, str]] = [{}]
    if "tenant_id" in names:
        paths.append({"tenant_id": TENANT})
    if "server_id" in names:
        paths += [{"tenant_id": TENANT, "server_id": server} for server in servers]
    return st.one_of(
        [operation.as_strategy(mode, path_parameters=p, headers=headers) for p in paths]
    )


def _fuzz(operation, mode: GenerationMode, servers: list[str], base: str, token: str) -> None:  # type: ignore[no-untyped-def]
    checks = NEGATIVE_CHECKS if mode is NEGATIVE else POSITIVE_CHECKS
    session = requests.Session()

    @FUZZ_SETTINGS
    @given(case=_cases(operation, mode, servers, token))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(base_url=base, session=session, checks=checks, timeout=10)

    try:
        run()
    finally:
        session.close()


@pytest.mark.parametrize("token", ["alice", "olive", "root"])
@pytest.mark.parametrize(("method", "path", "mode"), FUZZED, ids=lambda v: str(v))
def test_operation(schema, servers, api_server, method, path, mode, token) -> None:  # type: ignore[no-untyped-def]
    """As a creator, an observer (403 on writes) and an admin (any tenant, /admin/v1)."""
    _fuzz(schema[path][method], mode, servers, api_server.base, token)


def test_every_operation_is_fuzzed(schema) -> None:  # type: ignore[no-untyped-def]
    """A new endpoint must be added here, not escape the fuzzing unnoticed."""
    documented = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in schema.get_all_operations())
    }
    fuzzed = {(method, path) for method, path, _ in FUZZED} | {("GET", p) for p in PROBES}
    assert documented == fuzzed


@pytest.mark.parametrize("path", PROBES)
def test_probe_answers(schema, api_server, path) -> None:  # type: ignore[no-untyped-def]
    response = schema[path]["GET"].Case().call(base_url=api_server.base, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("path", PROBES)
def test_probe_answers_as_documented(schema, api_server, path) -> None:  # type: ignore[no-untyped-def]
    case = schema[path]["GET"].Case()
    case.call_and_validate(base_url=api_server.base, checks=POSITIVE_CHECKS, timeout=10)
