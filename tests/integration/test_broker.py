"""The overrides of taskiq-redis (server/grading/broker.py), a test or more each:
every test here fails if its override stops applying (taskiq-redis's own methods
open a client of their own, which these tests forbid)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import taskiq_redis.redis_broker
from redis.asyncio import Redis
from starlette.datastructures import Secret

from protocol.ids import SessionId
from server.grading import broker as broker_module
from server.grading.broker import StreamBroker
from server.grading.queue import Capacity, GradingQueue, make_queue
from server.settings import Settings
from tests.e2e._client import UNIT_S

pytestmark = pytest.mark.integration


class OwnClientForbidden:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("taskiq-redis opened a client of its own")


@pytest.fixture
def settings(redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url="sqlite:///unused.db",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        jwt_secret=Secret("broker-test-secret-long-enough-for-hs256"),
    )


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[GradingQueue]:
    queue = make_queue(settings)
    await queue.broker.startup()
    yield queue
    await queue.broker.shutdown()
    async with Redis.from_url(settings.redis_url or "") as redis:
        keys = [key async for key in redis.scan_iter(f"*{settings.redis_prefix}*")]
        if keys:
            await redis.delete(*keys)


def stream(queue: GradingQueue) -> StreamBroker:
    assert isinstance(queue.broker, StreamBroker)
    return queue.broker


def test_another_version_of_taskiq_redis_is_refused() -> None:
    broker_module.require_version(broker_module.WRITTEN_FOR)
    with pytest.raises(RuntimeError, match="found taskiq-redis 1.3.0"):
        broker_module.require_version("1.3.0")


async def test_kick_sends_on_the_shared_client_in_the_message_format_of_before(
    queue: GradingQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(taskiq_redis.redis_broker, "Redis", OwnClientForbidden)

    await queue.grade(SessionId("s-1"), 2)

    async with Redis.from_url(settings.redis_url or "") as redis:
        entries: Any = await redis.xrange(f"{settings.redis_prefix}grading")
    [(_, fields)] = entries  # one message, sent on the shared client
    message = json.loads(fields[b"data"])
    assert message["task_name"] == "grade_answers"
    assert message["args"] == [[["s-1", 2]]]
    assert message["kwargs"] == {}


async def test_listen_takes_a_message_and_reads_the_next_once_there_is_room(
    queue: GradingQueue,
) -> None:
    broker = stream(queue)
    broker.capacity = capacity = Capacity(1)
    await queue.grade(SessionId("s-1"), 0)
    await queue.grade(SessionId("s-2"), 0)
    reads = aiter(broker.listen())

    async with asyncio.timeout(UNIT_S):
        await anext(reads)
    assert capacity.unstarted == 1  # taken, not started yet

    with capacity.holding(1):  # the task runs: no room for another
        second = asyncio.ensure_future(anext(reads))
        done, _ = await asyncio.wait({second}, timeout=UNIT_S / 5)
        assert not done
    async with asyncio.timeout(UNIT_S):
        await second


async def test_ack_goes_through_the_shared_client(
    queue: GradingQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.grade(SessionId("s-1"), 0)
    reads = aiter(stream(queue).listen())
    async with asyncio.timeout(UNIT_S):
        message = await anext(reads)
    monkeypatch.setattr(taskiq_redis.redis_broker, "Redis", OwnClientForbidden)

    acknowledged = message.ack()
    assert acknowledged is not None
    await acknowledged

    prefix = settings.redis_prefix
    async with Redis.from_url(settings.redis_url or "") as redis:
        pending = await redis.xpending(f"{prefix}grading", f"{prefix}graders")
    assert pending["pending"] == 0
