"""Resolving an endpoint's host and refusing what it may not reach (SSRF).

:func:`checked_target` runs when an endpoint is saved and before every attempt, so
that a host rebound to an inner address after it was saved is refused too; the
attempt then connects to the address checked here, never resolving again.
"""

from __future__ import annotations

import asyncio
import socket

from protocol.webhooks.address import Target, refusal, target
from server.errors import AddressRefused

RESOLVE_TIMEOUT_S = 5.0


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in the resolver's order, without repeats.

    Raises:
        AddressRefused: it does not resolve (within :data:`RESOLVE_TIMEOUT_S`).
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise AddressRefused(f"the host {host!r} does not resolve: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def checked_target(url: str, *, allow_private: bool) -> tuple[Target, list[str]]:
    """The URL's target and its addresses, every one allowed.

    Raises:
        ValueError: not an endpoint URL (:func:`protocol.webhooks.address.target`).
        AddressRefused: the host does not resolve, or one of its addresses is not
            public and ``allow_private`` is false.
    """
    where = target(url)
    addresses = await resolve(where.host, where.port)
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise AddressRefused(
                    f"the host {where.host!r} resolves to {reason}; the server "
                    "does not call private networks (WEBHOOK_ALLOW_PRIVATE)"
                )
    return where, addresses
