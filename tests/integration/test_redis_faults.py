"""Redis restarted under the lock, the bus and a live interview (a private server).

Each test runs its own ``redis-server`` on a free port, so that it can kill it (like
a crash: nothing saved, every key gone) and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from protocol.ids import SessionId
from server.cluster.bus import RECONNECTED, RedisBus
from server.cluster.client import RedisClient, RedisUnavailable
from server.cluster.lock import Acquired, RedisLock
from tests.conftest import RedisServer, free_port
from tests.e2e._client import UNIT_S
from tests.e2e.conftest import make_settings, served
from tests.integration.test_redis_bus import Heard
from tests.integration.test_redis_lock import Told

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs redis-server on PATH"
    ),
]

S1 = SessionId("s-1")


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer(free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def restart(redis: RedisServer) -> None:
    await asyncio.to_thread(redis.stop)
    await asyncio.to_thread(redis.start)


async def reconnected(client: RedisClient) -> None:
    async with asyncio.timeout(UNIT_S):
        while not client.connected:
            await asyncio.sleep(0.01)


async def test_held_leases_come_back_after_redis_restarts_empty(
    redis: RedisServer,
) -> None:
    a, b = RedisClient(redis.url), RedisClient(redis.url)
    locks = RedisLock(a, renew_ms=100), RedisLock(b, renew_ms=100)
    await a.start()
    await b.start()
    try:
        told = Told()
        await locks[0].acquire(S1, "tab-1", takeover=False, on_superseded=told)

        await restart(redis)
        await reconnected(a)

        async with asyncio.timeout(UNIT_S):
            while await locks[0].holds(S1, "tab-1") is False:
                await asyncio.sleep(0.01)
        assert await locks[1].acquire(
            S1, "tab-2", takeover=False, on_superseded=Told()
        ) is (Acquired.LOCKED)
        assert told.times == 0
    finally:
        await a.close()
        await b.close()


async def test_attaching_fails_while_redis_is_down_and_works_once_it_is_back(
    redis: RedisServer,
) -> None:
    client = RedisClient(redis.url)
    lock = RedisLock(client)
    await client.start()
    try:
        await asyncio.to_thread(redis.stop)
        with pytest.raises(RedisUnavailable):
            await lock.acquire(S1, "tab-1", takeover=False, on_superseded=Told())

        await asyncio.to_thread(redis.start)

        async with asyncio.timeout(UNIT_S):
            while True:  # "try again" until the client has reconnected
                try:
                    outcome = await lock.acquire(
                        S1, "tab-1", takeover=False, on_superseded=Told()
                    )
                except RedisUnavailable:
                    await asyncio.sleep(0.01)
                    continue
                assert outcome is Acquired.ACQUIRED
                break
    finally:
        await client.close()


async def test_news_flows_again_and_listeners_reload_after_redis_restarts(
    redis: RedisServer,
) -> None:
    a, b = RedisClient(redis.url), RedisClient(redis.url)
    buses = RedisBus(a), RedisBus(b)
    await a.start()
    await b.start()
    try:
        heard = Heard()
        buses[1].subscribe(S1, heard)

        await restart(redis)
        await reconnected(a)
        await reconnected(b)
        await buses[0].publish(S1, "tab-1")

        origins = await heard.wait_for(2)
        assert RECONNECTED in origins
        assert "tab-1" in origins
    finally:
        await a.close()
        await b.close()


async def test_candidates_keep_answering_while_redis_restarts(
    redis: RedisServer, database_url: str, redis_prefix: str
) -> None:
    settings = make_settings(
        database_url, redis_url=redis.url, redis_prefix=redis_prefix
    )
    async with served(settings) as server:
        interview = await server.interview([60, 60, 60, 60])
        alice = await server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        await alice.expect("state")

        await asyncio.to_thread(redis.stop)
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        assert (await alice.expect("state"))["question_index"] == 1
        other = await server.candidate()
        await other.send({"type": "resume"})
        error = await other.expect_error("internal")
        assert "again" in error["message"]

        await asyncio.to_thread(redis.start)
        await alice.send({"type": "answer", "question_index": 1, "answer": "text"})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        assert (await alice.expect("state"))["question_index"] == 2
        async with asyncio.timeout(UNIT_S):
            while True:  # "try again" until the server reconnects and holds again
                await other.send({"type": "resume"})
                if (await other.expect("error"))["code"] == "session_locked":
                    break
                await asyncio.sleep(0.05)
        await alice.ping()
        await alice.close()
        await other.close()


async def test_a_hung_redis_is_noticed_by_its_silence_and_left_once_it_answers(
    redis: RedisServer,
) -> None:
    client = RedisClient(redis.url, ping_every_s=0.1)
    await client.start()
    try:
        redis.freeze()
        try:
            async with asyncio.timeout(UNIT_S):
                while not client.down:
                    await asyncio.sleep(0.01)
        finally:
            redis.thaw()
        await reconnected(client)
        assert await client.ping()
    finally:
        await client.close()


async def test_a_malformed_message_does_not_stop_the_subscriber(
    redis: RedisServer,
) -> None:
    a, b = RedisClient(redis.url), RedisClient(redis.url)
    locks = RedisLock(a), RedisLock(b)
    await a.start()
    await b.start()
    try:
        told = Told()
        await locks[0].acquire(S1, "tab-1", takeover=False, on_superseded=told)
        await b.redis.publish(a.key("lock", a.instance), "not json")

        await locks[1].acquire(S1, "tab-2", takeover=True, on_superseded=Told())

        await told.wait()
    finally:
        await a.close()
        await b.close()


async def test_listeners_are_registered_before_the_client_starts(
    redis: RedisServer,
) -> None:
    client = RedisClient(redis.url)
    await client.start()
    try:
        with pytest.raises(RuntimeError, match="before start"):
            RedisBus(client)
    finally:
        await client.close()
