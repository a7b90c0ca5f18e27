"""Group commit: concurrent callers share flushes, each gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from server.batching import Batcher


class Gate:
    """A flush that records its batches and waits until opened."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self.fail_on: int | None = None

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        await self.opened.wait()
        if self.fail_on in items:
            raise ValueError(f"cannot take {self.fail_on}")
        return [item * 10 for item in items]


async def test_a_lone_item_is_flushed_at_once_alone() -> None:
    gate = Gate()
    gate.opened.set()
    batcher: Batcher[int, int] = Batcher(gate.flush)
    assert await batcher.submit(1) == 10
    assert gate.batches == [[1]]


async def test_items_arriving_during_a_flush_share_the_next_one() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.flush)
    first = asyncio.create_task(batcher.submit(1))
    await gate.entered.wait()
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # they are queued behind the running flush
    gate.opened.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40]
    assert gate.batches == [[1], [2, 3, 4]]
    assert batcher.flushes == 2


async def test_a_batch_holds_at_most_max_items() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.flush, max_items=2)
    first = asyncio.create_task(batcher.submit(0))
    await gate.entered.wait()
    rest = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3, 4, 5)]
    await asyncio.sleep(0)
    gate.opened.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
    assert gate.batches == [[0], [1, 2], [3, 4], [5]]


async def test_a_failed_flush_fails_its_items_only() -> None:
    gate = Gate()
    gate.fail_on = 2
    batcher: Batcher[int, int] = Batcher(gate.flush)
    first = asyncio.create_task(batcher.submit(1))
    await gate.entered.wait()
    second = asyncio.create_task(batcher.submit(2))
    third = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    gate.opened.set()
    assert await first == 10
    for task in (second, third):
        with pytest.raises(ValueError, match="cannot take 2"):
            await task
    assert await batcher.submit(4) == 40  # the batcher goes on


async def test_a_caller_that_leaves_does_not_cancel_the_flush() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.flush)
    leaving = asyncio.create_task(batcher.submit(1))
    await gate.entered.wait()
    staying = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.opened.set()
    assert await staying == 20
    assert gate.batches == [[1], [2]]


async def test_a_flush_must_answer_every_item() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    batcher: Batcher[int, int] = Batcher(short)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await batcher.submit(1)


def test_max_items_must_be_positive() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return list(items)

    with pytest.raises(ValueError, match="positive"):
        Batcher(flush, max_items=0)


async def test_an_item_can_fail_alone() -> None:
    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {item}") if item == 2 else item for item in items]

    batcher: Batcher[int, int] = Batcher(flush)
    one, two = batcher.submit(1), batcher.submit(2)
    results = await asyncio.gather(one, two, return_exceptions=True)
    assert results[0] == 1
    assert isinstance(results[1], ValueError)


async def test_a_drain_cancelled_before_it_ran_does_not_stall_the_batcher() -> None:
    gate = Gate()
    gate.opened.set()
    batcher: Batcher[int, int] = Batcher(gate.flush)
    stalled = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the drain task exists but has not run yet
    assert batcher._running is not None
    batcher._running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stalled  # told, not left waiting

    assert await asyncio.wait_for(batcher.submit(2), 1) == 20
