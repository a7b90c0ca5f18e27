"""RedisLock on a real Redis: several instances (clients) share one key prefix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from protocol.ids import SessionId
from server.cluster.client import RedisClient, RedisUnavailable, escape_pattern
from server.cluster.lock import Acquired, RedisLock, SessionLock
from tests.conftest import free_port
from tests.e2e._client import UNIT_S

pytestmark = pytest.mark.integration

S1 = SessionId("s-1")
LEASE_MS = 400
RENEW_MS = 100

Instances = Callable[..., contextlib.AbstractAsyncContextManager[list[RedisLock]]]


class Told:
    """An ``on_superseded`` callback that can be waited for."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.times = 0

    def __call__(self) -> None:
        self.times += 1
        self.event.set()

    async def wait(self) -> None:
        async with asyncio.timeout(UNIT_S):
            await self.event.wait()


@pytest.fixture
def instances(redis_url: str, redis_prefix: str) -> Instances:
    """``async with instances(n) as locks``: ``n`` started instances' locks."""

    @contextlib.asynccontextmanager
    async def started(
        count: int = 2, *, lease_ms: int = LEASE_MS
    ) -> AsyncIterator[list[RedisLock]]:
        clients = [RedisClient(redis_url, prefix=redis_prefix) for _ in range(count)]
        locks = [RedisLock(c, lease_ms=lease_ms, renew_ms=RENEW_MS) for c in clients]
        for client in clients:
            await client.start()
        try:
            yield locks
        finally:
            for client in clients:
                async with asyncio.timeout(UNIT_S):
                    await client.close()

    return started


async def acquire(
    lock: RedisLock, holder: str, *, takeover: bool = False, told: Told | None = None
) -> Acquired:
    return await lock.acquire(
        S1, holder, takeover=takeover, on_superseded=told or Told()
    )


async def test_redis_lock_satisfies_the_session_lock_protocol(
    redis_url: str,
) -> None:
    client = RedisClient(redis_url)
    lock: SessionLock = RedisLock(client)
    assert lock
    await client.close()


async def test_a_lock_held_on_one_instance_is_locked_on_another(
    instances: Instances,
) -> None:
    async with instances() as (a, b):
        assert await acquire(a, "tab-1") is Acquired.ACQUIRED
        assert await acquire(b, "tab-2") is Acquired.LOCKED
        assert await a.holds(S1, "tab-1")
        assert not await b.holds(S1, "tab-2")


async def test_acquiring_again_by_the_same_holder_keeps_it(
    instances: Instances,
) -> None:
    async with instances(1) as (a,):
        assert await acquire(a, "tab-1") is Acquired.ACQUIRED
        assert await acquire(a, "tab-1") is Acquired.ACQUIRED


async def test_takeover_from_another_instance_tells_the_old_holder_there(
    instances: Instances,
) -> None:
    async with instances() as (a, b):
        old, new = Told(), Told()
        await acquire(a, "tab-1", told=old)

        assert await acquire(b, "tab-2", takeover=True, told=new) is (
            Acquired.TAKEN_OVER
        )

        await old.wait()
        assert await b.holds(S1, "tab-2")
        assert not await a.holds(S1, "tab-1")
        assert new.times == 0


async def test_takeover_on_the_same_instance_tells_the_old_holder_at_once(
    instances: Instances,
) -> None:
    async with instances(1) as (a,):
        old = Told()
        await acquire(a, "tab-1", told=old)

        assert await acquire(a, "tab-2", takeover=True) is Acquired.TAKEN_OVER

        assert old.times == 1


async def test_only_the_holder_releases(instances: Instances) -> None:
    async with instances() as (a, b):
        await acquire(a, "tab-1")

        await b.release(S1, "tab-2")
        assert await a.holds(S1, "tab-1")

        await a.release(S1, "tab-1")
        assert await acquire(b, "tab-2") is Acquired.ACQUIRED


async def test_releases_made_together_go_in_one_call_and_free_only_their_own(
    instances: Instances,
) -> None:
    sessions = [SessionId(f"s{number}") for number in range(40)]
    async with instances() as (a, b):
        for session_id in sessions:
            await a.acquire(session_id, "tab", takeover=False, on_superseded=Told())
        taken = sessions[7]
        await b.acquire(taken, "tab-b", takeover=True, on_superseded=Told())
        flushes = a._releases.flushes

        await asyncio.gather(*(a.release(s, "tab") for s in sessions))

        assert a._releases.flushes - flushes <= 2  # not forty calls
        assert await b.holds(taken, "tab-b")

        async def released() -> bool:
            # A renewal already on its way may set a key again; it then undoes it.
            held = [await a.holds(session_id, "tab") for session_id in sessions]
            return not any(held)

        async with asyncio.timeout(UNIT_S):
            while not await released():
                await asyncio.sleep(0.02)
        assert await b.holds(taken, "tab-b")


async def test_a_held_lease_is_renewed_past_its_length(instances: Instances) -> None:
    async with instances() as (a, b):
        await acquire(a, "tab-1")

        await asyncio.sleep(3 * LEASE_MS / 1000)  # the behaviour is time passing

        assert await acquire(b, "tab-2") is Acquired.LOCKED


async def test_the_lease_of_a_vanished_instance_lapses(instances: Instances) -> None:
    async with instances(1) as (b,):
        async with instances(1) as (a,):
            await acquire(a, "tab-1")
        # a's process is gone without releasing: nothing renews its lease any more.
        assert await acquire(b, "tab-2") is Acquired.LOCKED

        async with asyncio.timeout(UNIT_S):
            while await acquire(b, "tab-2") is Acquired.LOCKED:
                await asyncio.sleep(LEASE_MS / 4000)


async def test_renewal_tells_a_holder_whose_lock_was_taken_behind_its_back(
    instances: Instances,
) -> None:
    async with instances() as (a, b):
        told = Told()
        await acquire(a, "tab-1", told=told)
        # A takeover whose message was lost: only the value changes.
        await b.client.redis.set(a._key(S1), f"{b.client.instance}/tab-2")

        await told.wait()
        assert not await a.holds(S1, "tab-1")


async def test_renewal_puts_back_a_lease_redis_lost(instances: Instances) -> None:
    async with instances() as (a, b):
        await acquire(a, "tab-1")
        await a.client.redis.delete(a._key(S1))

        # Watch the key rather than probing with another holder: a probe that took
        # the free lock would rightly make a's renewal give its lease up.
        async with asyncio.timeout(UNIT_S):
            while await a.client.redis.get(a._key(S1)) is None:
                await asyncio.sleep(RENEW_MS / 4000)

        assert await a.holds(S1, "tab-1")
        assert await acquire(b, "tab-2") is Acquired.LOCKED


async def test_the_lock_lives_under_the_configured_prefix(
    instances: Instances, redis_prefix: str
) -> None:
    async with instances(1) as (a,):
        await acquire(a, "tab-1")

        ours = await a.client.redis.keys(escape_pattern(redis_prefix) + "*")

        assert [str(key) for key in ours] == [f"{redis_prefix}lock:session:{S1}"]


async def test_acquiring_without_redis_fails_clearly_and_nothing_else_raises() -> None:
    client = RedisClient(f"redis://127.0.0.1:{free_port()}/0")
    lock = RedisLock(client)
    await client.start(wait_s=0.01)
    try:
        with pytest.raises(RedisUnavailable, match="redis unavailable"):
            await acquire(lock, "tab-1")
        assert not await lock.holds(S1, "tab-1")
        await lock.release(S1, "tab-1")
        assert not await client.ping()
    finally:
        await client.close()


async def test_closing_stops_a_renewal_loop_that_lost_its_cancellation() -> None:
    # On Python 3.11 redis-py's send (asyncio.wait_for) drops a cancellation that
    # arrives as the send completes; the loop then renews on as if never cancelled.
    client = RedisClient(f"redis://127.0.0.1:{free_port()}/0")
    running = asyncio.Event()
    lost: list[bool] = []

    async def renew() -> None:
        running.set()
        if not lost:
            lost.append(True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(UNIT_S)

    client.every(0.001, renew)
    await client.start(wait_s=0.01)
    async with asyncio.timeout(UNIT_S):
        await running.wait()
        await client.close()

    assert lost
    assert all(task.done() for task in client._tasks)


async def test_a_renewal_that_fails_runs_again_at_the_next_interval() -> None:
    client = RedisClient(f"redis://127.0.0.1:{free_port()}/0")
    runs: list[int] = []
    ran_again = asyncio.Event()

    async def renew() -> None:
        runs.append(len(runs))
        if len(runs) > 1:
            ran_again.set()
        raise RuntimeError("renewal bug")

    client.every(0.001, renew)
    await client.start(wait_s=0.01)
    try:
        async with asyncio.timeout(UNIT_S):
            await ran_again.wait()
    finally:
        await client.close()
