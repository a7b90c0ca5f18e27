"""The socket driver's loop on fakes (server/candidate/connection.py): signing in,
starting, answering, drafts and leaving.

Each test runs the real :meth:`CandidateConnection.run` on a fake socket and fake
storage (tests/fakes); the clock moves only when a test moves it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from protocol.audit import AuditKind
from protocol.ids import SessionId
from server.candidate.connection import candidate_endpoint
from tests.e2e._client import UNIT_S
from tests.fakes.services import T0, FakeServices
from tests.fakes.websocket import FakeSocket
from tests.unit.server._candidate import CANDIDATE, World, settings, token


async def test_a_valid_token_is_answered_with_hello(world: World) -> None:
    client = await world.connect()

    hello = await client.login()

    assert hello["user"] == {"id": CANDIDATE, "name": "User ada", "role": "candidate"}
    assert hello["server_time"] == T0
    assert hello["active_session"] is None


async def test_hello_names_the_attempt_in_progress(world: World) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)

    second = await world.connect()
    hello = await second.login()

    assert hello["active_session"]["session_id"] == state["session_id"]


async def test_a_bad_token_is_refused_and_closed_4401(world: World) -> None:
    client = await world.connect()

    client.send({"type": "auth", "token": "not-a-jwt"})

    error = await client.expect("error")
    assert error["code"] == "unauthenticated"
    assert await client.socket.closed() == 4401
    assert await client.ended() == 4401


async def test_a_recruiter_token_is_closed_4403(world: World) -> None:
    client = await world.connect()

    client.send({"type": "auth", "token": token("rita", role="recruiter")})

    assert await client.socket.closed() == 4403


async def test_a_frame_other_than_auth_first_is_refused_and_closed_4401(
    world: World,
) -> None:
    client = await world.connect()

    client.send({"type": "ping", "client_time": 1})

    assert (await client.expect("error"))["code"] == "unauthenticated"
    assert await client.socket.closed() == 4401


async def test_a_binary_frame_before_auth_is_refused(world: World) -> None:
    client = await world.connect()

    client.socket.send_bytes(b"\x00")

    assert (await client.expect("error"))["code"] == "unauthenticated"
    assert await client.socket.closed() == 4401


async def test_start_sends_the_first_question_and_attaches(world: World) -> None:
    interview = await world.interview([60, 30])

    client, state = await world.attached(interview)

    assert state["question_index"] == 0
    assert state["question_count"] == 2
    assert state["deadline"] == T0 + 60_000
    storage = world.fakes.storage
    session_id = SessionId(state["session_id"])
    assert storage.sessions[session_id].owner_epoch == 1  # claimed once
    kinds = [entry.kind for entry in await storage.audit_log(session_id)]
    assert kinds == [AuditKind.STARTED, AuditKind.ATTACHED]
    assert await world.fakes.lock.holds(session_id, client.connection.holder)


async def test_start_of_an_interview_one_is_not_invited_to_is_refused(
    world: World,
) -> None:
    interview = await world.interview(invite=("someone-else",))
    client = await world.connect()
    await client.login()

    client.send({"type": "start", "interview_id": interview})

    assert (await client.expect("error"))["code"] == "not_found"
    assert world.fakes.storage.sessions == {}


async def test_an_answer_is_acknowledged_only_after_its_commit(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    storage = world.fakes.storage
    gate = storage.hold("commit")
    world.fakes.clock.advance(5_000)

    client.answer(0, "my answer", ref="r1")
    async with asyncio.timeout(UNIT_S):
        await gate.entered.wait()

    assert client.socket.unread() == []  # nothing acknowledged before the commit
    assert world.fakes.grading.answers == []
    gate.release()
    ack = await client.expect("answer_ack")
    assert (ack["ref"], ack["status"], ack["time_taken_ms"]) == ("r1", "accepted", 5000)
    assert (await client.expect("state"))["question_index"] == 1
    session_id = SessionId(state["session_id"])
    stored = await storage.load_attempt(session_id)
    assert stored is not None and stored.answers[0].text == "my answer"
    await client.socket.until(lambda: bool(world.fakes.grading.answers))
    assert world.fakes.grading.answers == [(session_id, [0])]


async def test_the_last_answer_completes_and_closes_1000(world: World) -> None:
    interview = await world.interview([60])
    client, state = await world.attached(interview)

    client.answer(0, "done", ref=1)

    assert (await client.expect("answer_ack"))["ref"] == 1
    assert (await client.expect("completed"))["session_id"] == state["session_id"]
    assert await client.socket.closed() == 1000
    assert await client.ended() == 1000
    session_id = SessionId(state["session_id"])
    log = await world.fakes.storage.audit_log(session_id)
    assert [entry.kind for entry in log][-2:] == [
        AuditKind.COMPLETED,
        AuditKind.DETACHED,
    ]
    assert log[-1].data == {"close_code": 1000}


async def test_a_draft_is_stored_then_acknowledged_and_restored(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.clock.advance(1_000)

    client.send({"type": "draft", "question_index": 0, "answer": "half"})

    ack = await client.expect("draft_ack")
    assert (ack["question_index"], ack["saved_at"]) == (0, T0 + 1_000)
    stored = await world.fakes.storage.load_attempt(SessionId(state["session_id"]))
    assert stored is not None and stored.draft is not None
    assert stored.draft.text == "half"
    client.send({"type": "resume"})
    assert (await client.expect("state"))["draft"] == "half"


async def test_a_signal_is_written_to_the_audit_log(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)

    client.send({"type": "signal", "kind": "paste", "detail": "12 chars"})
    client.send({"type": "ping", "client_time": 7})  # answered after the signal

    assert (await client.expect("pong"))["client_time"] == 7
    log = await world.fakes.storage.audit_log(SessionId(state["session_id"]))
    assert log[-1].kind is AuditKind.SIGNAL
    assert log[-1].data == {"signal": "paste", "detail": "12 chars"}


async def test_a_client_that_goes_away_is_detached_with_its_close_code(
    world: World,
) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])

    client.socket.disconnect(1001)

    assert await client.ended() == 1001
    assert client.socket.close_code is None  # no close frame to a client gone
    log = await world.fakes.storage.audit_log(session_id)
    assert log[-1].kind is AuditKind.DETACHED
    assert log[-1].data == {"close_code": 1001}
    assert not await world.fakes.lock.holds(session_id, client.connection.holder)
    assert world.fakes.timer.due_at(client.connection) is None
    assert world.fakes.bus.sessions() == []


async def test_a_failed_detach_entry_does_not_fail_the_close(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.storage.fail("append_audit")

    client.socket.disconnect(1001)

    assert await client.ended() == 1001
    log = await world.fakes.storage.audit_log(SessionId(state["session_id"]))
    assert log[-1].kind is AuditKind.ATTACHED  # the detach entry was lost


async def test_an_unexpected_failure_closes_1011_and_is_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = await world.connect()
    world.fakes.storage.fail("active_attempt", RuntimeError("boom"))

    with caplog.at_level(logging.ERROR, logger="server.candidate.connection"):
        client.send({"type": "auth", "token": token()})
        assert await client.socket.closed() == 1011

    assert "candidate connection failed" in caplog.text
    assert await client.ended() == 1011


async def test_the_endpoint_refuses_a_foreign_origin_with_4403() -> None:
    fakes = FakeServices(settings(allowed_origins=("https://app.example",)))
    socket = FakeSocket(fakes.services, origin="https://evil.example")

    await candidate_endpoint(socket.websocket)

    assert socket.accepted
    assert socket.close_code == 4403
    assert socket.sent == []
    assert socket.taken == 1  # the connect: no frame was read


async def test_the_endpoint_serves_an_allowed_origin() -> None:
    fakes = FakeServices(settings(allowed_origins=("https://app.example",)))
    socket = FakeSocket(fakes.services, origin="https://app.example")
    serving = asyncio.create_task(candidate_endpoint(socket.websocket))

    socket.send({"type": "auth", "token": token()})

    assert (await socket.expect("hello"))["user"]["id"] == CANDIDATE
    socket.disconnect(1000)
    async with asyncio.timeout(UNIT_S):
        await serving
    assert socket.close_code is None  # the client left first
