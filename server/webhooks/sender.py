"""One attempt of one delivery: resolve, check, sign, ``POST``, read a little.

The only module that imports httpx. The host is resolved and checked again before
every attempt (:func:`server.webhooks.resolver.checked_target`) and the request goes
to the address checked, with the URL's ``Host`` (and, for https, its name for SNI
and the certificate check), so a name rebound between the check and the connect
changes nothing. Redirects are not followed (a ``3xx`` is a failure), proxies from
the environment are ignored, and the whole attempt, resolving included, has one
time limit (``WEBHOOK_TIMEOUT_S``). Of the answer only the status, ``Retry-After``
and the first :data:`EXCERPT_BYTES` bytes (undecoded) are kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass

import httpx

from protocol.ids import Millis
from protocol.webhooks.address import Target
from protocol.webhooks.signature import headers
from server.errors import AddressRefused
from server.storage.webhooks import Claim
from server.webhooks.resolver import checked_target

logger = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
MAX_ERROR_CHARS = 500
USER_AGENT = "interview-server-webhooks/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt saw; ``status_code`` is ``None`` when no response came."""

    status_code: int | None
    retry_after: str | None
    excerpt: str | None
    error: str | None
    signatures: int
    duration_ms: int


def pinned(
    url: str, where: Target, address: str
) -> tuple[httpx.URL, dict[str, str], dict[str, object]]:
    """The request URL aimed at ``address``, the ``Host`` header and the extensions
    that keep the URL's name for TLS (SNI and the certificate check)."""
    original = httpx.URL(url)
    aimed = original.copy_with(host=address.partition("%")[0])
    extensions: dict[str, object] = {}
    if where.scheme == "https" and not _is_ip(where.host):
        extensions["sni_hostname"] = where.host
    return aimed, {"Host": original.netloc.decode("ascii")}, extensions


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Sender:
    """Posts attempts; :meth:`close` when done.

    Plain http keeps connections alive between attempts. https does not: a pooled
    TLS connection is chosen by address, and may not serve another host name than
    the one its certificate was checked for.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        allow_private: bool,
        concurrency: int = 32,
        excerpt_bytes: int = EXCERPT_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.excerpt_bytes = excerpt_bytes
        self._plain = self._client(httpx.Limits(max_connections=concurrency))
        self._tls = self._client(
            httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        )

    def _client(self, limits: httpx.Limits) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            limits=limits,
            follow_redirects=False,
            trust_env=False,  # HTTP(S)_PROXY would defeat the address check
        )

    async def close(self) -> None:
        await self._plain.aclose()
        await self._tls.aclose()

    async def send(self, claim: Claim, now: Millis) -> Answer:
        """Attempt ``claim`` once at ``now`` (its ``webhook-timestamp``); never
        raises but for cancellation."""
        keys = claim.secrets.signing_keys(now)
        signed = headers(keys, claim.message_id, now // 1000, claim.body)
        started = time.monotonic()
        status: int | None = None
        retry_after = excerpt = error = None
        try:
            async with asyncio.timeout(self.timeout_s):
                status, retry_after, excerpt = await self._post(claim, signed)
        except TimeoutError:
            error = f"timed out after {self.timeout_s:g} s"
        except AddressRefused as exc:
            error = str(exc)
        except (ValueError, httpx.InvalidURL) as exc:  # a URL that no longer parses
            error = f"invalid URL: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = round((time.monotonic() - started) * 1000)
        return Answer(
            status_code=status,
            retry_after=retry_after,
            excerpt=excerpt,
            error=None if error is None else error[:MAX_ERROR_CHARS],
            signatures=len(keys),
            duration_ms=duration_ms,
        )

    async def _post(
        self, claim: Claim, signed: dict[str, str]
    ) -> tuple[int, str | None, str]:
        where, addresses = await checked_target(
            claim.url, allow_private=self.allow_private
        )
        url, host, extensions = pinned(claim.url, where, addresses[0])
        client = self._tls if where.scheme == "https" else self._plain
        request = client.build_request(
            "POST",
            url,
            content=claim.body.encode("ascii"),
            headers={
                **host,
                **signed,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Accept-Encoding": "identity",  # the excerpt is read undecoded
            },
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            excerpt = await self._excerpt(response)
        finally:
            await response.aclose()
        return response.status_code, response.headers.get("retry-after"), excerpt

    async def _excerpt(self, response: httpx.Response) -> str:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.excerpt_bytes:
                break
        kept = b"".join(chunks)[: self.excerpt_bytes]
        return kept.decode("utf-8", errors="replace")
