"""The shared tick and expiry timer (server/candidate/scheduler.py).

The :class:`Scheduler` runs on the real loop with a fake wall clock that the test
moves by hand; every due time is a few milliseconds ahead, and the tests wait on
events, never on sleeps. (When ticks fall due is the protocol's rule:
``protocol.frames.next_tick``, tested in tests/unit/protocol/test_frames.py.)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import pytest

from protocol.frames import next_tick
from protocol.ids import Millis
from server.candidate.scheduler import Scheduler

TIMEOUT_S = 1.0 * float(os.environ.get("TEST_TIME_FACTOR", "1"))
T0: Millis = 1_700_000_000_000


# -- the scheduler ---------------------------------------------------------------------


class Clock:
    """A wall clock that only moves when the test says so."""

    def __init__(self, now: Millis = T0) -> None:
        self.now = now

    def __call__(self) -> Millis:
        return self.now


class FakeClient:
    """A scheduler client that records when it was called.

    ``due`` gives its next due time from ``now`` (``None``: never again).
    """

    def __init__(
        self,
        due: Callable[[Millis], Millis | None],
        on_due: Callable[[Millis], None] | None = None,
    ) -> None:
        self.generation = 0
        self.due = due
        self.calls: list[Millis] = []
        self.called = asyncio.Event()
        self.action = on_due

    def next_due(self, now: Millis) -> Millis | None:
        return self.due(now)

    def on_due(self, now: Millis) -> None:
        self.calls.append(now)
        self.called.set()
        if self.action is not None:
            self.action(now)


def once_at(when: Millis) -> Callable[[Millis], Millis | None]:
    """Due at ``when``, then never again."""
    return lambda now: when if now < when else None


async def called(*clients: FakeClient) -> None:
    for client in clients:
        await asyncio.wait_for(client.called.wait(), TIMEOUT_S)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def scheduler(clock: Clock) -> Scheduler:
    return Scheduler(clock)


async def test_a_client_is_called_when_it_is_due(
    scheduler: Scheduler, clock: Clock
) -> None:
    client = FakeClient(once_at(T0 + 2))

    scheduler.schedule(client)
    clock.now = T0 + 2

    await called(client)
    assert client.calls == [T0 + 2]
    scheduler.close()


async def test_a_rescheduled_client_is_called_only_for_its_newest_entry(
    scheduler: Scheduler, clock: Clock
) -> None:
    plan = [T0 + 2, T0 + 3]
    client = FakeClient(lambda now: plan[0] if now < plan[0] else None)
    scheduler.schedule(client)  # due at T0 + 2
    plan.pop(0)
    scheduler.schedule(client)  # now due at T0 + 3: the first entry is stale

    clock.now = T0 + 3
    await called(client)

    assert client.calls == [T0 + 3]
    scheduler.close()


async def test_a_cancelled_client_is_not_called(
    scheduler: Scheduler, clock: Clock
) -> None:
    cancelled = FakeClient(once_at(T0 + 1))
    witness = FakeClient(once_at(T0 + 2))
    scheduler.schedule(cancelled)
    scheduler.schedule(witness)
    scheduler.cancel(cancelled)

    clock.now = T0 + 2
    await called(witness)

    assert cancelled.calls == []
    scheduler.close()


async def test_a_failing_client_does_not_stop_the_others(
    scheduler: Scheduler, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(now: Millis) -> None:
        raise RuntimeError("boom")

    failing = FakeClient(once_at(T0 + 1), on_due=fail)
    after = FakeClient(once_at(T0 + 1))
    later = FakeClient(once_at(T0 + 2))
    scheduler.schedule(failing)
    scheduler.schedule(after)
    scheduler.schedule(later)

    with caplog.at_level(logging.ERROR, logger="server.candidate.scheduler"):
        clock.now = T0 + 1
        await called(failing, after)
        clock.now = T0 + 2
        await called(later)

    assert failing.calls == after.calls == [T0 + 1]
    assert later.calls == [T0 + 2]
    assert "timer callback failed" in caplog.text
    scheduler.close()


async def test_a_client_that_is_always_due_is_called_once_per_run(
    scheduler: Scheduler, clock: Clock
) -> None:
    def guard(now: Millis) -> None:
        if client.calls.count(now) > 3:
            raise RuntimeError("spinning")  # ends the spin instead of hanging

    client = FakeClient(lambda now: now, on_due=guard)  # "due now", every time
    scheduler.schedule(client)  # pushed to T0 + 1 at the earliest

    clock.now = T0 + 1
    await called(client)

    assert client.calls == [T0 + 1]
    client.called.clear()
    clock.now = T0 + 2
    await called(client)
    assert client.calls == [T0 + 1, T0 + 2]
    scheduler.close()


async def test_many_clients_due_at_the_same_time_are_all_called(
    scheduler: Scheduler, clock: Clock
) -> None:
    clients = [FakeClient(once_at(T0 + 2)) for _ in range(200)]
    for client in clients:
        scheduler.schedule(client)

    clock.now = T0 + 2
    await called(*clients)

    assert all(client.calls == [T0 + 2] for client in clients)
    scheduler.close()


async def test_a_client_keeps_being_called_at_each_due_time(
    scheduler: Scheduler, clock: Clock
) -> None:
    client = FakeClient(lambda now: next_tick(T0 + 1_000, now, 2))

    scheduler.schedule(client)
    for expected in (T0 + 2, T0 + 4, T0 + 6):
        clock.now = expected
        await called(client)
        client.called.clear()

    assert client.calls == [T0 + 2, T0 + 4, T0 + 6]
    scheduler.close()


async def test_a_client_due_after_one_that_just_ran_is_not_delayed(
    scheduler: Scheduler, clock: Clock
) -> None:
    # ``first`` runs at T0 + 1 and asks to be called again only in an hour; ``second``,
    # already waiting for T0 + 2, must still be called at T0 + 2.
    first = FakeClient(lambda now: T0 + 1 if now < T0 + 1 else T0 + 3_600_000)
    second = FakeClient(once_at(T0 + 2))
    scheduler.schedule(first)
    scheduler.schedule(second)

    clock.now = T0 + 1
    await called(first)
    clock.now = T0 + 2
    await called(second)

    assert second.calls == [T0 + 2]
    scheduler.close()


async def test_a_client_scheduled_from_inside_on_due_gets_its_new_time(
    scheduler: Scheduler, clock: Clock
) -> None:
    times = [T0 + 1, T0 + 5]
    client = FakeClient(lambda now: times[0] if now < times[0] else None)

    def reschedule(now: Millis) -> None:
        times.pop(0)
        scheduler.schedule(client)

    client.action = reschedule
    scheduler.schedule(client)
    clock.now = T0 + 1
    await called(client)
    client.called.clear()
    client.action = None

    clock.now = T0 + 5
    await called(client)

    assert client.calls == [T0 + 1, T0 + 5]
    scheduler.close()


async def test_a_client_that_is_never_due_is_not_queued(scheduler: Scheduler) -> None:
    client = FakeClient(lambda now: None)

    scheduler.schedule(client)

    assert scheduler._heap == []
    assert scheduler._handle is None


async def test_close_cancels_the_timer(scheduler: Scheduler, clock: Clock) -> None:
    client = FakeClient(once_at(T0 + 1))
    scheduler.schedule(client)

    scheduler.close()
    clock.now = T0 + 1
    witness = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, witness.set_result, None)
    await asyncio.wait_for(witness, TIMEOUT_S)

    assert client.calls == []


async def test_a_cancelled_entry_left_at_the_head_is_dropped(
    scheduler: Scheduler, clock: Clock
) -> None:
    witness = FakeClient(once_at(T0 + 1))
    cancelled = FakeClient(once_at(T0 + 3_600_000))
    scheduler.schedule(witness)
    scheduler.schedule(cancelled)
    scheduler.cancel(cancelled)

    clock.now = T0 + 1
    await called(witness)

    assert scheduler._heap == []  # nothing left to wake up for
    assert scheduler._handle is None
