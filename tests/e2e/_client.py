"""A small candidate client for end-to-end tests: real sockets, waits on frames."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIME_FACTOR = float(os.environ.get("TEST_TIME_FACTOR", "1"))
UNIT_S = 5.0 * TIME_FACTOR
"""How long a test waits for something that should happen at once."""

Frame = dict[str, Any]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = UNIT_S
) -> None:
    """Wait until ``check`` holds (polling), failing after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


class Candidate:
    """One candidate socket; frames are dicts, ticks are skipped unless asked for."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ticks: list[Frame] = []
        self.hello: Frame = {}

    @classmethod
    async def open(
        cls, url: str, *, origin: str | None = None, **kwargs: Any
    ) -> Candidate:
        headers = {"Origin": origin} if origin else None
        ws = await connect(url, additional_headers=headers, **kwargs)
        return cls(ws)

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def receive(self, *, ticks: bool = False, timeout: float = UNIT_S) -> Frame:
        """The next frame (ticks are collected in ``self.ticks`` and skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                frame: Frame = json.loads(await self.ws.recv())
                if frame["type"] != "tick" or ticks:
                    return frame
                self.ticks.append(frame)

    async def expect(self, kind: str, *, timeout: float = UNIT_S) -> Frame:
        frame = await self.receive(timeout=timeout)
        assert frame["type"] == kind, f"expected {kind}, got {frame}"
        return frame

    async def expect_error(self, code: str) -> Frame:
        frame = await self.expect("error")
        assert frame["code"] == code, frame
        return frame

    async def login(self, token: str) -> Frame:
        await self.send({"type": "auth", "token": token})
        self.hello = await self.expect("hello")
        return self.hello

    async def closed(self, *, timeout: float = UNIT_S) -> int:
        """Wait for the server's close (skipping frames); its code."""
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        except ConnectionClosed:
            pass
        await self.ws.wait_closed()
        assert self.ws.close_code is not None
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()

    async def frames_until_close(
        self, *, timeout: float = UNIT_S
    ) -> tuple[list[Frame], int]:
        """Every frame but ticks until the server closes, and the close code."""
        frames: list[Frame] = []
        try:
            async with asyncio.timeout(timeout):
                async for text in self.ws:
                    frame: Frame = json.loads(text)
                    if frame["type"] != "tick":
                        frames.append(frame)
        except ConnectionClosed:
            pass
        await self.ws.wait_closed()
        assert self.ws.close_code is not None
        return frames, self.ws.close_code

    async def ping(self, client_time: int = 42) -> Frame:
        """Wait until a ``ping`` gets its ``pong``: the connection is open and served.

        ``rate_limited`` answers are skipped while the client's budget refills.
        """
        async with asyncio.timeout(UNIT_S):
            while True:
                await self.send({"type": "ping", "client_time": client_time})
                frame = await self.receive()
                if frame == frame | {"type": "error", "code": "rate_limited"}:
                    await asyncio.sleep(0.05)  # a token comes back every 1/rate s
                    continue
                assert frame["type"] == "pong", frame
                assert frame["client_time"] == client_time
                return frame
