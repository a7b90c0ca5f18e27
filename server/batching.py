"""Group commit: callers that arrive while a flush is running share the next one.

A :class:`Batcher` turns many concurrent one-item calls into few many-item calls
without a timer. The first caller starts a flush at once (no added latency when the
system is idle); callers arriving while it runs wait together and go in the next
flush. So batches grow exactly as fast as the work they replace slows down, and the
cost per item falls as load rises: grades stored many per transaction, jobs sent
many per message, acknowledgements many per round trip.

Each caller gets its own item's result, or the exception its flush raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Calls ``flush`` with the items submitted while the previous flush ran.

    Args:
        flush: takes a batch and returns one result per item, in order; a result
            that is an exception fails its item, a raised exception every item of
            the batch.
        max_items: the largest batch; further items wait for the following flush.
    """

    def __init__(self, flush: Flush[T, R], *, max_items: int = 100) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be positive, got {max_items}")
        self._flush = flush
        self._max_items = max_items
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None
        self.flushes = 0
        """How many flushes ran (for tests and metrics)."""

    async def submit(self, item: T) -> R:
        """``item``'s result, once the flush that took it finished."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a caller that left is not an error
        self._waiting.append((item, future))
        if not self._draining():
            self._running = asyncio.create_task(self._drain())
            self._running.add_done_callback(self._stopped)
        # A cancelled caller does not cancel the flush: other callers share it.
        return await asyncio.shield(future)

    def _draining(self) -> bool:
        # A drain cancelled before its first step never ran its ``finally``, and one
        # of an event loop that closed never will: either way, start another.
        running = self._running
        return (
            running is not None
            and not running.done()
            and running.get_loop() is asyncio.get_running_loop()
        )

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_items]
            del self._waiting[: self._max_items]
            await self._run(batch)

    def _stopped(self, drain: asyncio.Task[None]) -> None:
        if self._running is drain:
            self._running = None
        if drain.cancelled():  # the loop is closing, maybe before the drain began
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.flushes += 1
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"flush returned {len(results)} results for {len(batch)} items"
                )
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled or exiting: the waiters were told
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)  # this item failed, not its batch
            else:
                future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
