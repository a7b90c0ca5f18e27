"""The client end of one WebSocket, under a real Starlette :class:`WebSocket`.

The server code gets ``FakeSocket.websocket``: Starlette's own class, so its state
checks (connect before accept, nothing after close) hold as they do under uvicorn.
Its ASGI ``receive`` and ``send`` are this fake's: frames the test sends wait in a
queue, and what the server sends is recorded (text frames, the accept, the close
code and reason). Tests wait on what was sent, never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.types import Message
from starlette.websockets import WebSocket

from server.services import Services
from tests.e2e._client import UNIT_S

Frame = dict[str, Any]


class FakeSocket:
    """One candidate's socket; ``services`` is what ``websocket.app.state`` holds."""

    def __init__(
        self,
        services: Services,
        *,
        origin: str | None = None,
        host: str = "testserver",
    ) -> None:
        app = Starlette()
        app.state.services = services
        headers = [(b"host", host.encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        scope = {
            "type": "websocket",
            "path": "/ws/candidate",
            "headers": headers,
            "query_string": b"",
            "app": app,
        }
        self.websocket = WebSocket(scope, self._receive, self._send)
        self.accepted = False
        self.sent: list[str] = []
        """Text frames the server sent, in order."""
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.taken = 0
        """Messages the server has received (the connect included)."""
        self.stuck = 0
        """Sends waiting for a client that stopped reading (:meth:`stall`)."""
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._incoming.put_nowait({"type": "websocket.connect"})
        self._news = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._read = 0

    # -- the client's side ----------------------------------------------------------

    def send(self, frame: Mapping[str, object]) -> None:
        self.send_text(json.dumps(frame))

    def send_text(self, text: str) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "text": text})

    def send_bytes(self, data: bytes) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "bytes": data})

    def disconnect(self, code: int = 1001) -> None:
        """The client goes away without a close handshake from the server."""
        self._incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    def garble(self) -> None:
        """The transport hands over a message out of order: Starlette raises."""
        self._incoming.put_nowait({"type": "websocket.connect"})

    def stall(self) -> None:
        """The client stops reading: the server's sends wait until :meth:`resume`."""
        self._writable.clear()

    def resume(self) -> None:
        self._writable.set()

    @property
    def waiting(self) -> int:
        """Frames sent by the client that the server has not received yet."""
        return self._incoming.qsize()

    # -- what the server sent ---------------------------------------------------------

    @property
    def frames(self) -> list[Frame]:
        return [json.loads(text) for text in self.sent]

    def unread(self, *, ticks: bool = False) -> list[Frame]:
        """Frames not yet returned by :meth:`receive` (ticks left out unless asked)."""
        return [
            frame
            for frame in self.frames[self._read :]
            if ticks or frame["type"] != "tick"
        ]

    async def until(
        self, check: Callable[[], bool], *, timeout: float = UNIT_S
    ) -> None:
        """Wait until ``check`` holds; it is tried whenever the server sends or
        receives something."""
        async with asyncio.timeout(timeout):
            while not check():
                self._news.clear()
                await self._news.wait()

    async def receive(self, *, ticks: bool = False) -> Frame:
        """The next frame sent (ticks skipped unless asked for)."""
        while True:
            await self.until(lambda: len(self.sent) > self._read)
            frame: Frame = json.loads(self.sent[self._read])
            self._read += 1
            if ticks or frame["type"] != "tick":
                return frame

    async def expect(self, kind: str, *, ticks: bool = False) -> Frame:
        frame = await self.receive(ticks=ticks)
        assert frame["type"] == kind, f"expected {kind}, got {frame}"
        return frame

    async def closed(self) -> int:
        """Wait for the server's close frame; its code."""
        await self.until(lambda: self.close_code is not None)
        assert self.close_code is not None
        return self.close_code

    # -- ASGI -------------------------------------------------------------------------

    async def _receive(self) -> Message:
        message = await self._incoming.get()
        self.taken += 1
        self._news.set()
        return message

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self.accepted = True
        elif kind == "websocket.send":
            self.stuck += 1
            self._news.set()
            await self._writable.wait()
            self.stuck -= 1
            self.sent.append(message["text"])
        elif kind == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason")
        self._news.set()
