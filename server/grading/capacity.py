"""How many jobs a worker holds, so that it reads another message only with room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

START_WAIT_S = 1.0


class Capacity:
    """The jobs a worker holds, so that it reads another message only when it has
    room for it (``limit`` jobs): a burst stays in Redis for the other workers
    instead of queueing behind the grades of whichever worker read first.
    ``limit`` 0 means no limit.

    A message's jobs count from the moment its task starts; until then the message
    counts as taken. :meth:`room` is awaited before each read (StreamBroker.listen).
    """

    def __init__(self, limit: int, *, start_wait_s: float = START_WAIT_S) -> None:
        self.limit = limit
        self.start_wait_s = start_wait_s
        self.held = 0
        self.unstarted = 0
        self._changed = asyncio.Event()

    def took(self) -> None:
        """A message was handed to taskiq."""
        self.unstarted += 1

    @contextlib.contextmanager
    def holding(self, jobs: int) -> Iterator[None]:
        """A message's task runs with ``jobs`` jobs."""
        self.unstarted = max(0, self.unstarted - 1)
        self.held += jobs
        self._changed.set()
        try:
            yield
        finally:
            self.held -= jobs
            self._changed.set()

    async def room(self) -> None:
        """Until the messages taken have started and fewer than ``limit`` jobs are
        held. A message that never starts (taskiq could not run it) is given up on
        after ``start_wait_s``."""
        if not self.limit:
            return
        try:
            async with asyncio.timeout(self.start_wait_s):
                await self._until(lambda: not self.unstarted)
        except TimeoutError:
            self.unstarted = 0
        await self._until(lambda: self.held < self.limit)

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()
