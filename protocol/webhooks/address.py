"""Which URLs an endpoint may have, and which addresses the server refuses to call
(Standard Webhooks, "Server side request forgery").

An endpoint URL is ``http`` or ``https`` with a host, without credentials or a
fragment. Its host is resolved by the shell when the endpoint is saved and again
before every attempt (so that a name rebound to an inner address is caught), and
every address it resolves to must be a public one: not loopback, private, shared
(carrier-grade NAT), link-local, multicast, reserved or unspecified, in IPv4 or
IPv6, including IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo, NAT64).
A deployment that must call its own network allows it (``WEBHOOK_ALLOW_PRIVATE``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """Where an endpoint URL points: ``host`` as written (IPv6 without brackets)."""

    scheme: str
    host: str
    port: int

    @property
    def default_port(self) -> bool:
        return self.port == _DEFAULT_PORTS[self.scheme]


def target(url: str) -> Target:
    """The target of an endpoint URL.

    Raises:
        ValueError: not an ``http(s)://host[:port]/...`` URL of at most 2,000
            characters, or with credentials or a fragment.
    """
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"expected a URL of at most {MAX_URL_CHARS} characters")
    if not url.isascii() or any(char.isspace() or ord(char) < 32 for char in url):
        raise ValueError("expected a URL of printable ASCII (encode the rest)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"expected an http:// or https:// URL, got {scheme or 'none'}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("expected a URL without credentials")
    if parts.fragment:
        raise ValueError("expected a URL without a fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("expected a port from 1 to 65535") from exc
    host = parts.hostname
    if not host or port == 0:
        raise ValueError("expected a URL with a host (and a port from 1 to 65535)")
    return Target(scheme, host, port or _DEFAULT_PORTS[scheme])


def refusal(address: str) -> str | None:
    """Why the server may not call ``address`` (an IP address, as resolved), or
    ``None`` when it is a public unicast address.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 scope goes
    for carried in _carried(ip):
        kind = _kind(carried)
        if kind is not None:
            return f"{address} is {kind} address"
    return None


def _carried(ip: IPAddress) -> list[IPAddress]:
    """The IPv4 address ``ip`` carries, if any, then ``ip``: both must be public."""
    found: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [*found, ip]


def _kind(ip: IPAddress) -> str | None:
    checks = (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        # What is left and still not global: shared address space (100.64/10) and
        # the like; 6to4 and Teredo relays count as global, their payload is checked.
        ("a non-public", not ip.is_global),
    )
    return next((kind for kind, applies in checks if applies), None)
