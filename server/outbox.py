"""A bounded send queue per socket (PROTOCOL.md section 3).

Ticks are merged: a queued tick is replaced by the newest one, which goes to the back
so that it never overtakes the frames before it. :meth:`put` recognises a tick by
its text (:func:`protocol.messages.is_tick`), so the socket puts every frame the
protocol queued the same way. When more than ``limit`` frames wait,
the reader is too slow: :meth:`put` returns ``False`` and the socket is closed 4008.
"""

from __future__ import annotations

import asyncio
from collections import deque

from protocol.messages import TICK_PREFIX


class Outbox:
    __slots__ = ("limit", "_frames", "_tick", "_ready", "_idle")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[str] = deque()
        self._tick: str | None = None
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, text: str) -> bool:
        """Queue a frame (a tick as :meth:`put_tick`); ``False`` when the queue
        overflowed."""
        if text.startswith(TICK_PREFIX):  # is_tick, inlined: the hottest path
            return self.put_tick(text)
        return self._append(text)

    def put_tick(self, text: str) -> bool:
        """Queue a tick, replacing one still waiting."""
        if self._tick is not None:  # still queued: get() forgets a tick it hands out
            self._frames.remove(self._tick)
        self._tick = text
        return self._append(text)

    def _append(self, text: str) -> bool:
        self._frames.append(text)
        self._ready.set()
        self._idle.clear()
        return len(self._frames) <= self.limit

    async def get(self) -> str:
        """The next frame to send, waiting for one."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        text = self._frames.popleft()
        if text is self._tick:
            self._tick = None
        return text

    def sent(self) -> None:
        """The writer has sent the frame it took with :meth:`get`."""
        if not self._frames:
            self._idle.set()

    async def join(self) -> None:
        """Wait until every queued frame has been sent."""
        await self._idle.wait()
