"""The socket driver's timer on fakes (server/candidate/connection.py): ticks and
expiry through the shared timer, and the send queue's limit.

The timer is :class:`ManualTimer`: a test moves the fake clock and fires what is due,
as the shared scheduler would at that time.
"""

from __future__ import annotations

import asyncio

from protocol.audit import AuditKind
from protocol.ids import SessionId
from tests.e2e._client import UNIT_S, eventually
from tests.fakes.services import T0, FakeServices
from tests.unit.server._candidate import World, settings

QUESTION_CLOSES = T0 + 60_000 + 2_000  # a 60 s question, 2 s of grace


async def test_attaching_schedules_the_first_tick(world: World) -> None:
    interview = await world.interview()
    client, _ = await world.attached(interview)

    assert world.fakes.timer.due_at(client.connection) == T0 + 1_000


async def test_a_due_tick_is_sent_with_the_time_left(world: World) -> None:
    interview = await world.interview()
    client, _ = await world.attached(interview)
    clock, timer = world.fakes.clock, world.fakes.timer

    clock.now = T0 + 1_000
    assert timer.run_due() == 1

    tick = await client.expect("tick", ticks=True)
    assert (tick["remaining_ms"], tick["server_time"]) == (59_000, T0 + 1_000)
    assert timer.due_at(client.connection) == T0 + 2_000


async def test_the_expiry_falls_due_through_the_timer_and_is_stored(
    world: World,
) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])
    clock, timer = world.fakes.clock, world.fakes.timer

    clock.now = QUESTION_CLOSES + 1
    timer.run_due()

    expired = await client.expect("time_expired")
    assert expired["question_index"] == 0
    following = await client.expect("state")
    assert (following["question_index"], following["deadline"]) == (
        1,
        QUESTION_CLOSES + 60_000,
    )
    stored = await world.fakes.storage.load_attempt(session_id)
    assert stored is not None
    assert stored.answers[0].time_expired and stored.question_index == 1
    assert world.fakes.grading.answers == [(session_id, [0])]
    log = await world.fakes.storage.audit_log(session_id)
    assert AuditKind.EXPIRED in [entry.kind for entry in log]
    # the next question's ticks follow, aligned to its deadline
    assert timer.due_at(client.connection) == QUESTION_CLOSES + 1_000


async def test_a_long_absence_expires_every_question_and_completes(
    world: World,
) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])
    clock, timer = world.fakes.clock, world.fakes.timer

    clock.now = T0 + 200_000
    timer.run_due()

    assert (await client.expect("time_expired"))["question_index"] == 0
    assert (await client.expect("time_expired"))["question_index"] == 1
    assert (await client.expect("completed"))["session_id"] == session_id
    assert await client.socket.closed() == 1000
    assert world.fakes.grading.answers == [(session_id, [0, 1])]
    assert timer.due_at(client.connection) is None


async def test_an_answer_in_flight_when_its_question_closes_is_kept(
    world: World,
) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])
    storage, clock, timer = world.fakes.storage, world.fakes.clock, world.fakes.timer
    gate = storage.hold("commit")
    clock.now = QUESTION_CLOSES - 1
    client.answer(0, "just in time", ref="r")
    async with asyncio.timeout(UNIT_S):
        await gate.entered.wait()

    clock.now = QUESTION_CLOSES + 1
    timer.run_due()  # the expiry is handed to the handler, busy with the commit
    gate.release()

    assert (await client.expect("answer_ack"))["status"] == "accepted"
    assert (await client.expect("state"))["question_index"] == 1
    tick = await client.expect("tick", ticks=True)  # the wakeup found nothing due
    assert tick["question_index"] == 1
    stored = await storage.load_attempt(session_id)
    assert stored is not None and not stored.answers[0].time_expired
    assert world.fakes.grading.answers == [(session_id, [0])]


async def test_a_client_that_reads_too_slowly_is_closed_4008() -> None:
    world = World(FakeServices(settings(send_queue_max=1)))
    client = await world.connect()
    await client.login()
    client.socket.stall()
    client.send({"type": "ping", "client_time": 0})
    await client.socket.until(lambda: client.socket.stuck == 1)

    client.send({"type": "ping", "client_time": 1})  # waits in the queue
    client.send({"type": "ping", "client_time": 2})  # one too many

    assert await client.ended() == 4008
    assert client.socket.close_code == 4008


async def test_a_tick_that_finds_the_queue_full_closes_4008() -> None:
    world = World(FakeServices(settings(send_queue_max=1)))
    interview = await world.interview()
    client, _ = await world.attached(interview)
    client.socket.stall()
    client.send({"type": "ping", "client_time": 1})
    await client.socket.until(lambda: client.socket.stuck == 1)
    client.send({"type": "ping", "client_time": 2})  # waits in the queue

    async def queue_full() -> bool:  # nothing the client sees tells: ask the queue
        return len(client.connection.outbox) == 1

    await eventually(queue_full)

    world.fakes.clock.now = T0 + 1_000
    world.fakes.timer.run_due()

    assert await client.ended() == 4008
    assert client.socket.close_code == 4008
