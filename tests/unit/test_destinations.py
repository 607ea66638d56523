"""Where a webhook may send: http(s) URLs whose host resolves only to public unicast addresses
(loopback and private ones too when allowed), never a link-local or metadata address, and the
request goes to the address checked."""

from __future__ import annotations

import pytest

from common.destinations import (
    Destination,
    RefusedDestination,
    address_problem,
    check_destination,
    resolve,
)

PUBLIC = "93.184.215.14"


def pointing(*addresses: str):  # type: ignore[no-untyped-def]
    """A resolver that answers these addresses for every name, and records what it was asked."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fd00:ec2::254%eth0", "a cloud metadata address"),  # scoped, still the metadata
        ("fd00:ec2::254%a%b", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("100.64.0.1", "a private address"),
        ("fd12::1", "a private address"),
        ("0.0.0.0", "not a public unicast address"),
        ("224.0.0.1", "not a public unicast address"),
        ("ff02::1", "not a public unicast address"),
        ("240.0.0.1", "not a public unicast address"),
        (PUBLIC, None),
        ("2606:2800:220:1::1", None),
        ("::ffff:93.184.215.14", None),
    ],
)
def test_each_address_is_refused_for_what_it_is(address: str, problem: str | None) -> None:
    assert address_problem(address, allow_private=False) == problem


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("fd12::1", True),
        ("169.254.169.254", False),
        ("fd00:ec2::254%eth0", False),
        ("169.254.1.1", False),
        ("224.0.0.1", False),
    ],
)
def test_allowing_private_lets_loopback_and_private_through_alone(address, allowed) -> None:
    assert (address_problem(address, allow_private=True) is None) == allowed


def test_a_public_url_is_checked_resolved_and_aimed_at_its_addresses() -> None:
    resolver = pointing(PUBLIC, "2606:2800:220:1::1")
    destination = check_destination("HTTPS://hooks.example.com./si?x=1&y=2", False, resolver)
    assert destination == Destination(
        "https", "hooks.example.com", 443, "/si?x=1&y=2", (PUBLIC, "2606:2800:220:1::1")
    )
    assert resolver.asked == [("hooks.example.com", 443)]
    assert destination.host_header == "hooks.example.com"


def test_the_port_and_path_default_and_the_host_header_names_a_port_not_the_schemes() -> None:
    plain = check_destination("http://hooks.example.com", False, pointing(PUBLIC))
    assert (plain.port, plain.target, plain.host_header) == (80, "/", "hooks.example.com")
    other = check_destination("http://[2606:2800::1]:8080/a", False, pointing(PUBLIC))
    assert (other.port, other.target, other.host_header) == (8080, "/a", "[2606:2800::1]:8080")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/", "the scheme must be http or https, not 'ftp'"),
        ("hooks.example.com/si", "the scheme must be http or https, not 'none'"),
        ("https://user:pw@hooks.example.com/", "the URL must not carry a user or password"),
        ("https://user@hooks.example.com/", "the URL must not carry a user or password"),
        ("https:///si", "the URL has no host"),
        ("https://hooks.example.com:99999/", "not a valid URL (Port out of range 0-65535)"),
        (
            "http://metadata.google.internal/",
            "metadata.google.internal is a cloud metadata service",
        ),
        ("http://metadata./", "metadata is a cloud metadata service"),
    ],
)
def test_a_url_that_is_not_allowed_is_refused_naming_why(url: str, message: str) -> None:
    resolver = pointing(PUBLIC)
    with pytest.raises(RefusedDestination) as refused:
        check_destination(url, False, resolver)
    assert str(refused.value) == message
    assert resolver.asked == []


def test_one_address_not_allowed_among_public_ones_refuses_the_url() -> None:
    with pytest.raises(RefusedDestination) as refused:
        check_destination("https://hooks.example.com/", False, pointing(PUBLIC, "10.0.0.5"))
    assert str(refused.value) == (
        "hooks.example.com resolves to 10.0.0.5, a private address (WEBHOOK_ALLOW_PRIVATE is off)"
    )
    with pytest.raises(RefusedDestination) as refused:
        check_destination("https://hooks.example.com/", True, pointing("169.254.169.254"))
    assert (
        str(refused.value)
        == "hooks.example.com resolves to 169.254.169.254, a cloud metadata address"
    )


def test_allowing_private_lets_a_url_to_a_private_address_through() -> None:
    destination = check_destination("http://hooks.internal:8080/", True, pointing("10.0.0.5"))
    assert destination.addresses == ("10.0.0.5",)


def test_a_host_that_resolves_to_nothing_is_refused() -> None:
    with pytest.raises(RefusedDestination, match="the host hooks.example.com does not resolve"):
        check_destination("https://hooks.example.com/", False, pointing())


def test_the_system_resolver_answers_addresses_and_refuses_a_name_it_cannot_look_up() -> None:
    assert resolve("127.0.0.1", 80) == ["127.0.0.1"]
    with pytest.raises(RefusedDestination, match="does not resolve"):
        resolve("a" * 64 + ".example.com", 443)  # a label too long for IDNA: never looked up
