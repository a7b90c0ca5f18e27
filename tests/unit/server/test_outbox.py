"""The bounded send queue of one socket (server/outbox.py)."""

from __future__ import annotations

import asyncio
import os

from protocol.messages import tick_text
from server.outbox import Outbox

TIMEOUT_S = 1.0 * float(os.environ.get("TEST_TIME_FACTOR", "1"))


async def drain(outbox: Outbox) -> list[str]:
    return [await outbox.get() for _ in range(len(outbox))]


async def test_frames_come_out_in_the_order_they_were_put() -> None:
    outbox = Outbox(limit=10)
    for text in ("a", "b", "c"):
        assert outbox.put(text)

    assert await drain(outbox) == ["a", "b", "c"]
    assert len(outbox) == 0


async def test_a_new_tick_replaces_the_waiting_one_and_goes_to_the_back() -> None:
    outbox = Outbox(limit=10)
    outbox.put("state-1")
    outbox.put_tick("tick-1")
    outbox.put("answer_ack")
    outbox.put_tick("tick-2")

    assert await drain(outbox) == ["state-1", "answer_ack", "tick-2"]


async def test_a_tick_already_sent_is_not_replaced() -> None:
    outbox = Outbox(limit=10)
    outbox.put_tick("tick-1")
    assert await outbox.get() == "tick-1"

    outbox.put("state")
    outbox.put_tick("tick-2")

    assert await drain(outbox) == ["state", "tick-2"]


async def test_a_tick_taken_while_another_is_queued_does_not_remove_a_frame() -> None:
    outbox = Outbox(limit=10)
    outbox.put_tick("tick-1")
    outbox.put("state")
    assert await outbox.get() == "tick-1"

    outbox.put_tick("tick-2")
    outbox.put_tick("tick-3")

    assert await drain(outbox) == ["state", "tick-3"]


async def test_ticks_alone_never_overflow() -> None:
    outbox = Outbox(limit=2)

    results = [outbox.put_tick(f"tick-{n}") for n in range(100)]

    assert all(results)
    assert await drain(outbox) == ["tick-99"]


async def test_put_says_false_once_more_than_limit_frames_wait() -> None:
    outbox = Outbox(limit=3)

    assert [outbox.put(f"frame-{n}") for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


async def test_a_tick_beyond_the_limit_overflows_too() -> None:
    outbox = Outbox(limit=2)
    outbox.put("a")
    outbox.put("b")

    assert outbox.put_tick("tick") is False


async def test_get_waits_for_a_frame() -> None:
    outbox = Outbox(limit=10)
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)  # let it start waiting
    assert not getter.done()

    outbox.put("hello")

    assert await asyncio.wait_for(getter, TIMEOUT_S) == "hello"


async def test_get_waits_again_after_the_queue_is_drained() -> None:
    outbox = Outbox(limit=10)
    outbox.put("first")
    assert await outbox.get() == "first"

    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    outbox.put_tick("tick")

    assert await asyncio.wait_for(getter, TIMEOUT_S) == "tick"


async def test_a_tick_frame_put_like_any_other_frame_is_merged() -> None:
    outbox = Outbox(limit=10)
    first = tick_text(0, 60_000, 59_000, 1_000)
    newest = tick_text(0, 60_000, 58_000, 2_000)

    outbox.put(first)
    outbox.put("state")
    outbox.put(newest)

    assert await drain(outbox) == ["state", newest]
