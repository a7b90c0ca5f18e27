"""A worker reads another message only when it has room (server/grading/capacity.py)."""

from __future__ import annotations

import asyncio

from server.grading.queue import Capacity


async def test_without_a_limit_there_is_always_room() -> None:
    capacity = Capacity(0)
    capacity.took()
    await asyncio.wait_for(capacity.room(), 1)


async def test_a_taken_message_must_start_before_the_next_read() -> None:
    capacity = Capacity(10)
    capacity.took()
    room = asyncio.create_task(capacity.room())
    await asyncio.sleep(0)
    assert not room.done()

    with capacity.holding(3):
        await asyncio.wait_for(room, 1)  # started, and 3 < 10


async def test_a_full_worker_waits_until_jobs_finish() -> None:
    capacity = Capacity(5)
    capacity.took()
    with capacity.holding(5):
        room = asyncio.create_task(capacity.room())
        await asyncio.sleep(0)
        assert not room.done()  # 5 jobs held: no room
    await asyncio.wait_for(room, 1)
    assert capacity.held == 0


async def test_a_message_that_never_starts_is_given_up_on() -> None:
    capacity = Capacity(5, start_wait_s=0)
    capacity.took()  # taskiq could not run it: no task ever starts
    await asyncio.wait_for(capacity.room(), 1)
    assert capacity.unstarted == 0
    capacity.took()
    with capacity.holding(1):
        await asyncio.wait_for(capacity.room(), 1)
