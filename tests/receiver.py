"""A real webhook receiver on 127.0.0.1 for the tests: uvicorn on a free port.

It answers each request with the next scripted :class:`Reply` (then the default),
keeps every request it got, and lets a test wait for the next one; it verifies
nothing itself; tests verify signatures with the ``standardwebhooks`` reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.types import Receive, Scope, Send

from tests.e2e._client import UNIT_S


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 204
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Receiver:
    port: int = 0
    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    received: list[Received] = field(default_factory=list)
    _arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def next(self, timeout: float = UNIT_S) -> Received:
        """The next request that arrives (or arrived and was not taken yet)."""
        async with asyncio.timeout(timeout):
            return await self._arrivals.get()

    def pending(self) -> int:
        """Requests arrived and not taken by :meth:`next`."""
        return self._arrivals.qsize()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        request = Received(scope["path"], headers, b"".join(chunks))
        self.received.append(request)
        self._arrivals.put_nowait(request)
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # a slow receiver, on purpose
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` (a new one by default) until the block ends."""
    receiver = receiver or Receiver()
    receiver.port = _free_port()
    config = uvicorn.Config(
        receiver,
        host="127.0.0.1",
        port=receiver.port,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(UNIT_S):
            while not server.started:
                assert not serving.done(), "the receiver did not start"
                await asyncio.sleep(0.01)
        yield receiver
    finally:
        server.should_exit = True
        await serving
