"""The single-connection lock of an attempt (server/lock.py)."""

from __future__ import annotations

from protocol.ids import SessionId
from server.cluster.lock import Acquired, InProcessLock

S1 = SessionId("s-1")
S2 = SessionId("s-2")


class Told:
    """An ``on_superseded`` callback that counts how often it was told."""

    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


async def test_a_free_lock_is_acquired() -> None:
    lock = InProcessLock()

    assert await lock.acquire(S1, "a", takeover=False, on_superseded=Told()) is (
        Acquired.ACQUIRED
    )
    assert await lock.holds(S1, "a")


async def test_acquiring_a_lock_already_held_by_the_same_holder_succeeds() -> None:
    lock = InProcessLock()
    told = Told()
    await lock.acquire(S1, "a", takeover=False, on_superseded=told)

    outcome = await lock.acquire(S1, "a", takeover=True, on_superseded=told)

    assert outcome is Acquired.ACQUIRED
    assert told.times == 0


async def test_a_lock_held_by_another_is_locked_without_takeover() -> None:
    lock = InProcessLock()
    told = Told()
    await lock.acquire(S1, "a", takeover=False, on_superseded=told)

    outcome = await lock.acquire(S1, "b", takeover=False, on_superseded=Told())

    assert outcome is Acquired.LOCKED
    assert told.times == 0
    assert await lock.holds(S1, "a")
    assert not await lock.holds(S1, "b")


async def test_a_takeover_tells_the_old_holder_once_and_moves_the_lock() -> None:
    lock = InProcessLock()
    old, new = Told(), Told()
    await lock.acquire(S1, "a", takeover=False, on_superseded=old)

    outcome = await lock.acquire(S1, "b", takeover=True, on_superseded=new)

    assert outcome is Acquired.TAKEN_OVER
    assert (old.times, new.times) == (1, 0)
    assert await lock.holds(S1, "b")
    assert not await lock.holds(S1, "a")


async def test_a_second_takeover_tells_only_the_holder_it_displaces() -> None:
    lock = InProcessLock()
    first, second, third = Told(), Told(), Told()
    await lock.acquire(S1, "a", takeover=False, on_superseded=first)
    await lock.acquire(S1, "b", takeover=True, on_superseded=second)

    await lock.acquire(S1, "c", takeover=True, on_superseded=third)

    assert (first.times, second.times, third.times) == (1, 1, 0)


async def test_only_the_holder_can_release() -> None:
    lock = InProcessLock()
    await lock.acquire(S1, "a", takeover=False, on_superseded=Told())

    await lock.release(S1, "b")
    assert await lock.holds(S1, "a")

    await lock.release(S1, "a")
    assert not await lock.holds(S1, "a")
    assert await lock.acquire(S1, "b", takeover=False, on_superseded=Told()) is (
        Acquired.ACQUIRED
    )


async def test_releasing_a_free_lock_does_nothing() -> None:
    lock = InProcessLock()

    await lock.release(S1, "a")

    assert not await lock.holds(S1, "a")


async def test_locks_of_different_sessions_are_independent() -> None:
    lock = InProcessLock()
    await lock.acquire(S1, "a", takeover=False, on_superseded=Told())

    outcome = await lock.acquire(S2, "b", takeover=False, on_superseded=Told())

    assert outcome is Acquired.ACQUIRED
    assert await lock.holds(S1, "a")
    assert await lock.holds(S2, "b")
