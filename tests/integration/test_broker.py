"""The overrides of taskiq-redis (server/grading/broker.py), a test or more each:
every test here fails if its override stops applying (taskiq-redis's own methods
open a client of their own, which these tests forbid, or end the worker when Redis
fails, which the tests on a private Redis, killed and started again, catch)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import taskiq_redis.redis_broker
from redis.asyncio import Redis
from starlette.datastructures import Secret
from taskiq.acks import AckableMessage

from protocol.ids import SessionId
from server.grading import broker as broker_module
from server.grading.broker import StreamBroker
from server.grading.queue import Capacity, GradingQueue, make_queue
from server.settings import Settings
from tests.conftest import RedisServer, free_port
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
    queue: GradingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(taskiq_redis.redis_broker, "Redis", OwnClientForbidden)
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


async def delivered_and_written(settings: Settings) -> tuple[bytes, bytes]:
    """The group's last delivered id and the stream's last id."""
    prefix = settings.redis_prefix
    async with Redis.from_url(settings.redis_url or "") as redis:
        [group] = await redis.xinfo_groups(f"{prefix}grading")
        written = (await redis.xinfo_stream(f"{prefix}grading"))["last-generated-id"]
    return group["last-delivered-id"], written


async def test_caught_up_once_the_group_has_read_every_message(
    queue: GradingQueue, settings: Settings
) -> None:
    assert await queue.caught_up()  # nothing sent yet
    await queue.grade(SessionId("s-1"), 0)
    await queue.grade(SessionId("s-2"), 0)
    assert not await queue.caught_up()
    reads = aiter(stream(queue).listen())

    async with asyncio.timeout(UNIT_S):
        await anext(reads)
        assert not await queue.caught_up()  # one of two read
        await anext(reads)
    assert await queue.caught_up()
    delivered, written = await delivered_and_written(settings)
    assert delivered == written


async def test_a_stream_whose_group_vanished_is_not_caught_up(
    queue: GradingQueue, settings: Settings
) -> None:
    prefix = settings.redis_prefix
    async with Redis.from_url(settings.redis_url or "") as redis:
        await redis.xgroup_destroy(f"{prefix}grading", f"{prefix}graders")
    await queue.grade(SessionId("s-1"), 0)

    # Nobody reads it until a worker makes the group again: not late, waiting.
    assert not await queue.caught_up()


# -- a private Redis, killed and started again empty -------------------------------


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH")
    server = RedisServer(free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def private_queue(
    private_redis: RedisServer, settings: Settings
) -> AsyncIterator[GradingQueue]:
    queue = make_queue(dataclasses.replace(settings, redis_url=private_redis.url))
    await queue.broker.startup()
    yield queue
    await queue.broker.shutdown()


async def restart_empty(redis: RedisServer) -> None:
    await asyncio.to_thread(redis.stop)  # SIGKILL: nothing saved
    await asyncio.to_thread(redis.start)


def jobs_of(message: AckableMessage) -> Any:
    return json.loads(message.data)["args"]


async def test_listen_reads_again_after_redis_restarted_empty(
    private_queue: GradingQueue, private_redis: RedisServer
) -> None:
    async with contextlib.aclosing(stream(private_queue).listen()) as reads:
        await private_queue.grade(SessionId("s-1"), 0)
        async with asyncio.timeout(UNIT_S):
            first = await anext(reads)

        await restart_empty(private_redis)  # the stream and its group are gone
        following = asyncio.ensure_future(anext(reads))
        await private_queue.grade(SessionId("s-2"), 0)  # sending works at once

        async with asyncio.timeout(UNIT_S):
            message = await following
    assert jobs_of(message) == [[["s-2", 0]]]
    assert jobs_of(first) == [[["s-1", 0]]]
    acknowledged = first.ack()  # of a message Redis no longer has: nothing to do
    assert acknowledged is not None
    await acknowledged
    assert await private_queue.caught_up()


async def test_listen_waits_while_redis_is_down_and_reads_once_it_is_back(
    private_queue: GradingQueue, private_redis: RedisServer
) -> None:
    async with contextlib.aclosing(stream(private_queue).listen()) as reads:
        following = asyncio.ensure_future(anext(reads))
        await asyncio.to_thread(private_redis.stop)
        done, _ = await asyncio.wait({following}, timeout=UNIT_S / 5)
        assert not done  # still trying, not failed

        await asyncio.to_thread(private_redis.start)
        await private_queue.grade(SessionId("s-1"), 0)
        async with asyncio.timeout(UNIT_S):
            assert jobs_of(await following) == [[["s-1", 0]]]


async def test_an_acknowledgement_redis_cannot_take_is_dropped(
    private_queue: GradingQueue,
    private_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await private_queue.grade(SessionId("s-1"), 0)
    async with contextlib.aclosing(stream(private_queue).listen()) as reads:
        async with asyncio.timeout(UNIT_S):
            message = await anext(reads)
    await asyncio.to_thread(private_redis.stop)

    acknowledged = message.ack()
    assert acknowledged is not None
    with caplog.at_level(logging.WARNING, logger="server.grading.broker"):
        await acknowledged  # does not raise: the message is delivered again later

    assert "1 acknowledgements lost" in caplog.text
    assert not await private_queue.caught_up()  # Redis down: nothing known late
