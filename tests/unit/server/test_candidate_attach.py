"""The socket driver's ways in and out on fakes (server/candidate/connection.py and
lobby.py): resume, Start Over from a fresh socket, failures while attaching, and a
client that sends faster than the server handles.
"""

from __future__ import annotations

import asyncio

import pytest

from protocol.audit import AuditKind
from protocol.ids import SessionId, UserId
from server.candidate import connection as candidate
from server.errors import AlreadyInProgress
from tests.e2e._client import UNIT_S
from tests.fakes.services import T0, FakeServices
from tests.fakes.storage import Method
from tests.unit.server._candidate import CANDIDATE, World, settings


async def test_no_auth_by_the_deadline_closes_4401(world: World) -> None:
    client = await world.connect()

    world.fakes.clock.advance(10_001)  # before the loop first waits for a frame

    assert await client.socket.closed() == 4401
    assert client.socket.close_reason == "authentication timed out"
    assert client.socket.sent == []


async def test_resume_without_an_attempt_in_progress_is_refused(world: World) -> None:
    client = await world.connect()
    await client.login()

    client.send({"type": "resume"})

    assert (await client.expect("error"))["code"] == "no_active_session"


async def test_an_answer_before_attaching_is_refused(world: World) -> None:
    client = await world.connect()
    await client.login()

    client.answer(0, "b")

    assert (await client.expect("error"))["code"] == "not_attached"


async def test_a_reconnected_candidate_resumes_where_they_left(world: World) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    first.answer(0, "b")
    await first.expect("answer_ack")
    first.socket.disconnect(1006)
    await first.ended()

    second = await world.connect()
    await second.login()
    second.send({"type": "resume"})

    resumed = await second.expect("state")
    assert (resumed["session_id"], resumed["question_index"]) == (
        state["session_id"],
        1,
    )
    log = await world.fakes.storage.audit_log(SessionId(state["session_id"]))
    assert [entry.kind for entry in log][-2:] == [
        AuditKind.DETACHED,
        AuditKind.ATTACHED,
    ]


async def test_a_start_while_attached_is_refused(world: World) -> None:
    interview = await world.interview()
    client, _ = await world.attached(interview)

    client.send({"type": "start", "interview_id": interview})

    assert (await client.expect("error"))["code"] == "already_in_progress"
    assert len(world.fakes.storage.sessions) == 1


async def test_a_start_that_loses_to_another_start_is_in_progress(
    world: World,
) -> None:
    interview = await world.interview()
    client = await world.connect()
    await client.login()
    world.fakes.storage.fail("create_attempt", AlreadyInProgress("the other tab"))

    client.send({"type": "start", "interview_id": interview})

    assert (await client.expect("error"))["code"] == "already_in_progress"


async def test_start_over_from_a_fresh_socket_takes_the_free_attempt(
    world: World,
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    first.socket.disconnect(1006)
    await first.ended()

    second = await world.connect()
    await second.login()
    second.send({"type": "restart"})

    fresh = await second.expect("state")
    assert fresh["attempt"] == 2
    old = await world.fakes.storage.load_attempt(SessionId(state["session_id"]))
    assert old is not None and old.status == "abandoned"
    lock = world.fakes.lock
    assert not await lock.holds(old.session_id, second.connection.holder)


async def test_start_over_from_a_fresh_socket_is_refused_while_another_holds_it(
    world: World,
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)

    second = await world.connect()
    await second.login()
    second.send({"type": "restart"})

    assert (await second.expect("error"))["code"] == "session_locked"
    stored = await world.fakes.storage.load_attempt(SessionId(state["session_id"]))
    assert stored is not None and stored.in_progress
    assert await world.fakes.storage.count_attempts(interview, UserId(CANDIDATE)) == 1


async def test_start_over_of_an_attempt_whose_time_ran_out_shows_its_end(
    world: World,
) -> None:
    interview = await world.interview([60], grace_s=2.0)
    client, state = await world.attached(interview)
    world.fakes.clock.now = T0 + 100_000  # the timer has not fired yet

    client.send({"type": "restart"})

    assert (await client.expect("time_expired"))["question_index"] == 0
    assert (await client.expect("completed"))["session_id"] == state["session_id"]
    assert await client.socket.closed() == 1000
    session_id = SessionId(state["session_id"])
    assert world.fakes.grading.answers == [(session_id, [0])]
    assert await world.fakes.storage.count_attempts(interview, UserId(CANDIDATE)) == 1


@pytest.mark.parametrize("step", ["attach", "load_attempt"])
async def test_a_database_away_while_attaching_is_an_error_and_leaks_no_lock(
    world: World, step: Method
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])
    first.socket.disconnect(1006)
    await first.ended()
    second = await world.connect()
    await second.login()
    world.fakes.storage.fail(step)

    second.send({"type": "resume"})

    assert (await second.expect("error"))["code"] == "internal"
    assert not await world.fakes.lock.holds(session_id, second.connection.holder)
    assert world.fakes.bus.sessions() == []
    second.send({"type": "resume"})  # the same frame again works
    assert (await second.expect("state"))["session_id"] == session_id


async def test_a_socket_that_failed_to_attach_leaves_the_attempt_free(
    world: World,
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    first.socket.disconnect(1006)
    await first.ended()
    second = await world.connect()
    await second.login()
    world.fakes.storage.fail("attach")
    second.send({"type": "resume"})
    await second.expect("error")

    second.socket.disconnect(1001)
    await second.ended()
    third = await world.connect()
    await third.login()
    third.send({"type": "resume"})  # no takeover: the lock must be free

    assert (await third.expect("state"))["session_id"] == state["session_id"]


async def test_a_transport_failure_while_reading_is_a_close_1006(
    world: World,
) -> None:
    client = await world.connect()
    await client.login()

    client.socket.garble()

    assert await client.ended() == 1006
    assert client.socket.close_code is None


async def test_the_reader_stops_at_a_full_inbox_and_resumes_when_it_drains() -> None:
    world = World(FakeServices(settings(rate_burst=1_000, send_queue_max=1_000)))
    interview = await world.interview()
    client, state = await world.attached(interview)
    gate = world.fakes.storage.hold("append_audit")
    client.send({"type": "signal", "kind": "paste"})  # the handler waits on it
    async with asyncio.timeout(UNIT_S):
        await gate.entered.wait()
    taken = client.socket.taken
    total = candidate.INBOX_HIGH + 10

    for n in range(total):
        client.send({"type": "ping", "client_time": n})
    await client.socket.until(
        lambda: client.socket.taken == taken + candidate.INBOX_HIGH
    )

    assert not client.connection.room.is_set()  # the reader waits for room
    assert client.socket.waiting == 10  # left with the transport
    gate.release()
    await client.socket.until(lambda: len(client.socket.unread()) == total)
    pongs = [frame["client_time"] for frame in client.socket.unread()]
    assert pongs == list(range(total))
