"""RedisBus on a real Redis: news reaches listeners on every instance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from protocol.events import Event, EventKind
from protocol.ids import InterviewId, SessionId
from server.cluster.bus import EventBus, RedisBus
from server.cluster.client import RedisClient
from tests.conftest import free_port
from tests.e2e._client import UNIT_S

pytestmark = pytest.mark.integration

S1 = SessionId("s-1")
S2 = SessionId("s-2")

Instances = Callable[..., contextlib.AbstractAsyncContextManager[list[RedisBus]]]


class Heard:
    """A listener that keeps every ``origin`` and can be waited for."""

    def __init__(self) -> None:
        self.origins: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, origin: str) -> None:
        self.origins.append(origin)
        self._changed.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(UNIT_S):
            while len(self.origins) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.origins


@pytest.fixture
def instances(redis_url: str, redis_prefix: str) -> Instances:
    """``async with instances(n) as buses``: ``n`` started instances' buses."""

    @contextlib.asynccontextmanager
    async def started(count: int = 2) -> AsyncIterator[list[RedisBus]]:
        clients = [RedisClient(redis_url, prefix=redis_prefix) for _ in range(count)]
        buses = [RedisBus(client) for client in clients]
        for client in clients:
            await client.start()
        try:
            yield buses
        finally:
            for client in clients:
                async with asyncio.timeout(UNIT_S):
                    await client.close()

    return started


async def test_redis_bus_satisfies_the_event_bus_protocol(redis_url: str) -> None:
    client = RedisClient(redis_url)
    bus: EventBus = RedisBus(client)
    assert bus
    await client.close()


async def test_news_published_on_one_instance_reaches_listeners_on_another(
    instances: Instances,
) -> None:
    async with instances() as (a, b):
        heard = Heard()
        b.subscribe(S1, heard)

        await a.publish(S1, "tab-1")

        assert await heard.wait_for(1) == ["tab-1"]


async def test_every_listener_hears_each_news_once(instances: Instances) -> None:
    async with instances() as (a, b):
        here, there = Heard(), Heard()
        a.subscribe(S1, here)
        b.subscribe(S1, there)

        await a.publish(S1, "first")
        assert here.origins == ["first"]  # local listeners hear it at once
        await b.publish(S1, "second")
        await a.publish(S1, "third")
        # Redis keeps the order of publishes: once the markers crossed, every echo
        # of the news above has arrived too.
        markers = [Heard(), Heard()]
        a.subscribe(S2, markers[0])
        b.subscribe(S2, markers[1])
        await a.publish(S2, "marker-a")
        await b.publish(S2, "marker-b")
        for marker in markers:
            await marker.wait_for(2)

        assert sorted(here.origins) == ["first", "second", "third"]
        assert sorted(there.origins) == ["first", "second", "third"]


async def test_news_of_other_attempts_is_not_heard(instances: Instances) -> None:
    async with instances() as (a, b):
        heard, marker = Heard(), Heard()
        b.subscribe(S1, heard)
        b.subscribe(S2, marker)

        await a.publish(S2, "other")
        await marker.wait_for(1)

        assert heard.origins == []


async def test_a_closed_subscription_hears_nothing_more(instances: Instances) -> None:
    async with instances() as (a, b):
        heard, marker = Heard(), Heard()
        subscription = b.subscribe(S1, heard)
        b.subscribe(S1, marker)
        subscription.close()

        await a.publish(S1, "tab-1")
        await marker.wait_for(1)

        assert heard.origins == []


async def test_a_failing_listener_does_not_keep_news_from_others(
    instances: Instances,
) -> None:
    def failing(origin: str) -> None:
        raise RuntimeError("listener bug")

    async with instances() as (a, b):
        heard = Heard()
        b.subscribe(S1, failing)
        b.subscribe(S1, heard)

        await a.publish(S1, "tab-1")

        assert await heard.wait_for(1) == ["tab-1"]


async def test_publishing_without_redis_still_tells_local_listeners() -> None:
    client = RedisClient(f"redis://127.0.0.1:{free_port()}/0")
    bus = RedisBus(client)
    await client.start(wait_s=0.01)
    try:
        heard = Heard()
        bus.subscribe(S1, heard)

        await bus.publish(S1, "tab-1")

        assert heard.origins == ["tab-1"]
    finally:
        await client.close()


async def test_interview_events_reach_listeners_on_every_instance_once(
    instances: Instances,
) -> None:
    interview = InterviewId("i-1")
    kind = EventKind.ANSWER_EVALUATED
    event = Event(interview, 7, S1, kind, 1_800_000_000_000, {"score": 2.5})
    async with instances() as (worker, server):
        here: list[Event | None] = []
        there: list[Event | None] = []
        worker.subscribe_events(interview, here.append)
        arrived = asyncio.Event()

        def heard_there(received: Event | None) -> None:
            there.append(received)
            arrived.set()

        server.subscribe_events(interview, heard_there)

        await worker.publish_event(event)

        async with asyncio.timeout(UNIT_S):
            await arrived.wait()
        marker = Heard()
        worker.subscribe(S2, marker)
        await server.publish(S2, "marker")  # after any echo of the event
        await marker.wait_for(1)
        assert here == [event]
        assert there == [event]
