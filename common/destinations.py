"""Where a webhook may send: http(s) URLs whose host resolves only to addresses the service
may reach on a tenant's behalf.

The rule is checked when a URL is set and again before every delivery, against the addresses
the delivery then connects to, so that a name re-pointed at an internal address after it was
checked (DNS rebinding) reaches nothing inside.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import urllib.parse
from collections.abc import Callable

#: Resolves (host, port) to IP addresses; injected so tests can point names anywhere.
Resolver = Callable[[str, int], list[str]]

#: Cloud metadata services: they hand out the credentials of the machine that asks.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
#: Names of metadata services, refused before they are even resolved.
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
#: Addresses of private networks that WEBHOOK_ALLOW_PRIVATE lets through: RFC 1918, the
#: carrier-grade NAT range (RFC 6598) and unique-local IPv6.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK = "a loopback address"
PRIVATE = "a private address"


class RefusedDestination(ValueError):
    """The URL may not be used; the message says why, naming the problem."""


@dataclasses.dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`addresses`, all allowed) and what to ask for."""

    scheme: str
    host: str
    port: int
    target: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise RefusedDestination(f"the host {host} does not resolve ({error})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(address: str, allow_private: bool) -> str | None:
    """Why the service may not connect to `address`, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_loopback:
        return None if allow_private else LOOPBACK
    if any(ip in network for network in PRIVATE_NETWORKS):
        return None if allow_private else PRIVATE
    if not ip.is_global or ip.is_multicast:
        return "not a public unicast address"
    return None


def check_destination(url: str, allow_private: bool, resolver: Resolver = resolve) -> Destination:
    """The URL checked and resolved, or RefusedDestination saying what is wrong with it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedDestination(f"not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise RefusedDestination(f"the scheme must be http or https, not {scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        # They would be sent nowhere (events are authenticated by their signature), and
        # answered back by GET: a password has no place in it.
        raise RefusedDestination("the URL must not carry a user or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise RefusedDestination("the URL has no host")
    if host in METADATA_NAMES:
        raise RefusedDestination(f"{host} is a cloud metadata service")
    port = port or DEFAULT_PORTS[scheme]
    addresses = resolver(host, port)
    if not addresses:
        raise RefusedDestination(f"the host {host} does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_private)
        if problem is not None:
            hint = " (WEBHOOK_ALLOW_PRIVATE is off)" if problem in (LOOPBACK, PRIVATE) else ""
            raise RefusedDestination(f"{host} resolves to {address}, {problem}{hint}")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Destination(scheme, host, port, target, tuple(addresses))
