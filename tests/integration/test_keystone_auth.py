"""The keystone authentication backend over real HTTP against the stand-in Keystone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from api.auth.identity import AuthBackendUnavailable, Identity
from api.auth.keystone import NEGATIVE_CACHE_SECONDS, KeystoneAuth
from tests.standins.openstack_cloud import ADMIN_USER, ManualClock, OpenStackCloud

VALIDATE = "/identity/v3/auth/tokens"


@pytest.fixture
def cloud() -> Iterator[OpenStackCloud]:
    with OpenStackCloud(hang_seconds=5) as cloud:
        yield cloud


@pytest.fixture
def clock() -> ManualClock:
    # The service's clock; the stand-in keeps real time, so moving this one ahead makes
    # tokens look older to the service than Keystone thinks they are.
    return ManualClock()


@pytest.fixture
def auth(cloud: OpenStackCloud, clock: ManualClock) -> KeystoneAuth:
    return KeystoneAuth(**cloud.admin_credentials, cache_seconds=30.0, timeout=0.5, clock=clock)


@pytest.fixture
def tenant(cloud: OpenStackCloud) -> str:
    return cloud.add_project("tenant-a")


def validations(cloud: OpenStackCloud) -> int:
    return cloud.count("keystone", method="GET", path_contains=VALIDATE)


@pytest.mark.parametrize(
    ("keystone_roles", "roles"),
    [
        # Not an operator project: the role admin is a creator of its own tenant (API.md).
        (["admin"], {"creator", "observer"}),
        (["member"], {"creator", "observer"}),
        (["Member"], {"creator", "observer"}),
        (["_member_"], {"creator", "observer"}),
        (["creator"], {"creator", "observer"}),
        (["reader"], {"observer"}),
        (["observer"], {"observer"}),
        (["reader", "heat_stack_owner"], {"observer"}),
        (["reader", "member"], {"creator", "observer"}),
    ],
)
def test_a_valid_token_gives_its_project_and_mapped_roles(
    cloud, auth, tenant, keystone_roles, roles
):
    token = cloud.issue_token(tenant, keystone_roles)

    assert auth.authenticate(token) == Identity(tenant_id=tenant, roles=frozenset(roles))


def test_admin_on_an_operator_project_is_the_operator(cloud, clock, tenant):
    operators = cloud.add_project("operators")
    auth = KeystoneAuth(**cloud.admin_credentials, operator_projects=[operators], clock=clock)

    operator = auth.authenticate(cloud.issue_token(operators, ["admin"]))
    customer_admin = auth.authenticate(cloud.issue_token(tenant, ["admin"]))

    assert operator is not None and operator.is_admin
    assert customer_admin == Identity(tenant, frozenset({"creator", "observer"}))


def test_a_token_with_none_of_the_services_roles_is_refused(cloud, auth, tenant):
    token = cloud.issue_token(tenant, ["heat_stack_user"])

    assert auth.authenticate(token) is None


def test_an_unknown_token_is_none(cloud, auth):
    assert auth.authenticate("not-a-token") is None
    assert validations(cloud) == 1


def test_an_empty_token_is_none_without_asking_keystone(cloud, auth):
    assert auth.authenticate("") is None
    assert cloud.count("keystone") == 0


def test_a_second_call_is_answered_from_the_cache(cloud, auth, tenant):
    token = cloud.issue_token(tenant, ["member"])
    first = auth.authenticate(token)

    assert auth.authenticate(token) == first
    assert validations(cloud) == 1
    # One service login serves every validation.
    assert cloud.count("keystone", method="POST") == 1


def test_the_cache_expires_after_cache_seconds(cloud, auth, tenant, clock):
    token = cloud.issue_token(tenant, ["member"])
    auth.authenticate(token)
    clock.advance(29)
    auth.authenticate(token)
    assert validations(cloud) == 1

    clock.advance(2)
    cloud.revoke_token(token)

    assert auth.authenticate(token) is None
    assert validations(cloud) == 2


def test_a_negative_answer_is_cached_for_a_shorter_time(cloud, auth, tenant, clock):
    auth.authenticate("unknown")
    auth.authenticate("unknown")
    assert validations(cloud) == 1

    clock.advance(NEGATIVE_CACHE_SECONDS + 0.1)

    assert auth.authenticate("unknown") is None
    assert validations(cloud) == 2


def test_a_token_that_expires_while_cached_is_refused_without_asking(cloud, auth, tenant, clock):
    token = cloud.issue_token(tenant, ["member"], expires_in=20)
    assert auth.authenticate(token) is not None

    clock.advance(21)

    assert auth.authenticate(token) is None
    assert validations(cloud) == 1


def test_known_answers_from_the_accepted_tokens_alone_and_never_asks(cloud, auth, tenant, clock):
    token = cloud.issue_token(tenant, ["member"], expires_in=60)
    assert auth.known(token) is None
    auth.authenticate("unknown")
    assert auth.known("unknown") is None

    identity = auth.authenticate(token)

    assert identity is not None and auth.known(token) == identity
    clock.advance(31)  # past the cache's time: Keystone would have to be asked again
    assert auth.known(token) is None
    assert auth.known("") is None
    assert validations(cloud) == 2


def test_known_refuses_a_cached_token_past_its_expiry(cloud, auth, tenant, clock):
    token = cloud.issue_token(tenant, ["member"], expires_in=20)
    auth.authenticate(token)

    clock.advance(21)

    assert auth.known(token) is None
    assert validations(cloud) == 1


def test_a_token_keystone_says_has_expired_is_refused(cloud, auth, tenant):
    token = cloud.issue_token(tenant, ["member"], expires_in=-1)

    assert auth.authenticate(token) is None


def test_an_expiry_already_past_by_our_clock_is_refused(cloud, auth, tenant, clock):
    token = cloud.issue_token(tenant, ["admin"], expires_in=60)
    clock.advance(120)

    assert auth.authenticate(token) is None


def test_the_cache_is_bounded(cloud, clock, tenant):
    auth = KeystoneAuth(**cloud.admin_credentials, cache_entries=3, clock=clock)
    tokens = [cloud.issue_token(tenant, ["reader"]) for _ in range(4)]
    for token in tokens:
        auth.authenticate(token)

    auth.authenticate(tokens[0])  # evicted as the least recently used

    assert validations(cloud) == 5
    assert len(auth._accepted) == 3


def test_a_flood_of_made_up_tokens_never_evicts_a_working_one(cloud, clock, tenant):
    auth = KeystoneAuth(**cloud.admin_credentials, cache_entries=3, clock=clock)
    working = cloud.issue_token(tenant, ["member"])
    assert auth.authenticate(working) is not None
    for number in range(20):
        assert auth.authenticate(f"made-up-{number}") is None
    asked = validations(cloud)

    assert auth.authenticate(working) == Identity(tenant, frozenset({"creator", "observer"}))
    assert validations(cloud) == asked  # answered from the cache: nothing pushed it out
    assert len(auth._refused) == 3


def test_a_revoked_service_token_is_replaced_and_the_user_still_gets_in(cloud, auth, tenant):
    first = cloud.issue_token(tenant, ["member"])
    auth.authenticate(first)
    cloud.revoke_user_tokens(ADMIN_USER)
    second = cloud.issue_token(tenant, ["member"])

    assert auth.authenticate(second) == Identity(tenant, frozenset({"creator", "observer"}))
    assert cloud.count("keystone", method="POST") == 2


def test_the_keystone_root_url_works_as_well(cloud, tenant, clock):
    credentials = {**cloud.admin_credentials, "auth_url": cloud.url + "/identity/"}
    auth = KeystoneAuth(**credentials, timeout=0.5, clock=clock)

    assert auth.authenticate(cloud.issue_token(tenant, ["reader"])) is not None


def test_an_unreachable_keystone_is_backend_unavailable(clock):
    cloud = OpenStackCloud().start()
    credentials = cloud.admin_credentials
    cloud.stop()
    auth = KeystoneAuth(**credentials, timeout=0.5, clock=clock)

    with pytest.raises(AuthBackendUnavailable):
        auth.authenticate("any")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_keystone_errors_are_backend_unavailable_and_not_cached(cloud, auth, tenant, method):
    token = cloud.issue_token(tenant, ["member"])
    cloud.fault("keystone", status=500, method=method, times=1)

    with pytest.raises(AuthBackendUnavailable):
        auth.authenticate(token)

    assert auth.authenticate(token) is not None


def test_a_hanging_keystone_is_backend_unavailable_within_the_timeout(cloud, auth, tenant):
    token = cloud.issue_token(tenant, ["member"])
    cloud.fault("keystone", hang=True, method="GET")

    started = time.monotonic()
    with pytest.raises(AuthBackendUnavailable):
        auth.authenticate(token)
    assert time.monotonic() - started < 3


def test_wrong_service_credentials_are_backend_unavailable(cloud, tenant, clock):
    credentials = {**cloud.admin_credentials, "password": "wrong"}
    auth = KeystoneAuth(**credentials, timeout=0.5, clock=clock)

    with pytest.raises(AuthBackendUnavailable):
        auth.authenticate(cloud.issue_token(tenant, ["member"]))


def test_a_service_user_that_may_not_validate_is_backend_unavailable(cloud, tenant, clock):
    cloud.add_user("weak", "pw", cloud.admin_project_id, ["reader"])
    credentials = {**cloud.admin_credentials, "username": "weak", "password": "pw"}
    auth = KeystoneAuth(**credentials, timeout=0.5, clock=clock)

    with pytest.raises(AuthBackendUnavailable):
        auth.authenticate(cloud.issue_token(tenant, ["member"]))
