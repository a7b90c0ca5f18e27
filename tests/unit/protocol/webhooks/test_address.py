from __future__ import annotations

import pytest

from protocol.webhooks.address import Target, refusal, target


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback"),
        ("127.255.0.9", "a loopback"),
        ("10.1.2.3", "a private"),
        ("172.16.0.1", "a private"),
        ("192.168.1.1", "a private"),
        ("169.254.169.254", "a link-local"),
        ("0.0.0.0", "an unspecified"),
        ("224.0.0.1", "a multicast"),
        ("239.255.255.250", "a multicast"),
        ("100.64.0.1", "a non-public"),
        ("240.0.0.1", "a private"),
        ("192.0.2.1", "a private"),
        ("::1", "a loopback"),
        ("::", "an unspecified"),
        ("fe80::1", "a link-local"),
        ("fe80::1%eth0", "a link-local"),
        ("fc00::1", "a private"),
        ("ff02::1", "a multicast"),
        ("2001:db8::1", "a private"),
        ("::ffff:127.0.0.1", "a loopback"),
        ("::ffff:169.254.169.254", "a link-local"),
        ("2002:a00:1::1", "a private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a private"),  # Teredo
        ("64:ff9b::a00:1", "a private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::5db8:d822", "a reserved"),  # NAT64 itself is no public route
    ],
)
def test_inner_addresses_are_refused_with_their_kind(address: str, kind: str) -> None:
    assert refusal(address) == f"{address} is {kind} address"


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(address) is None


def test_something_that_is_not_an_address_is_an_error() -> None:
    with pytest.raises(ValueError):
        refusal("example.com")


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("https://hooks.example.com/in", Target("https", "hooks.example.com", 443)),
        ("HTTP://Example.COM:8080/x?y=1", Target("http", "example.com", 8080)),
        ("http://[2606:4700::1]/", Target("http", "2606:4700::1", 80)),
        ("http://93.184.216.34:80", Target("http", "93.184.216.34", 80)),
    ],
)
def test_an_endpoint_url_has_a_scheme_host_and_port(url: str, where: Target) -> None:
    assert target(url) == where


def test_the_default_port_is_known() -> None:
    assert target("https://a.example").default_port
    assert not target("https://a.example:8443").default_port


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http://user:pw@example.com/", "without credentials"),
        ("http://example.com/#frag", "without a fragment"),
        ("http://example.com:99999/", "port from 1 to 65535"),
        ("http://example.com:0/", "port from 1 to 65535"),
        ("http:///path", "with a host"),
        ("http://exa mple.com/", "printable ASCII"),
        ("http://example.com/\x00", "printable ASCII"),
        ("http://exämple.com/", "printable ASCII"),
        ("http://example.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_other_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        target(url)
