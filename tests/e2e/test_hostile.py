"""Hostile and mistaken input: each gets its error or close code, others are served.

PROTOCOL.md sections 1 and 3: one bad frame never closes the connection; a client
that keeps sending bad frames or floods is closed with 4429; a frame over the size
limit closes with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from protocol.audit import AuditKind
from protocol.ids import UserId
from server.metrics import KNOWN_CLOSE_CODES
from tests.e2e._client import UNIT_S, Candidate, eventually
from tests.e2e.conftest import (
    Server,
    assert_serves_others,
    make_settings,
    served,
)

pytestmark = pytest.mark.e2e

ALICE = UserId("alice")


async def attached(server: Server) -> Candidate:
    """Alice, logged in and attached to a new attempt at question 0."""
    interview = await server.interview([60, 60, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    assert (await alice.expect("state"))["question_index"] == 0
    return alice


@contextlib.asynccontextmanager
async def flooding(client: Candidate, per_s: float) -> AsyncIterator[None]:
    """Send pings at ``per_s`` in the background until the socket closes."""

    async def flood() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.send({"type": "ping", "client_time": 1})
                await asyncio.sleep(1 / per_s)  # pacing, not waiting for an event

    task = asyncio.create_task(flood())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- bad frames ----------------------------------------------------------------------

Ref = str | int | None
BAD_FRAMES: dict[str, tuple[str, Ref]] = {
    "malformed JSON": ('{"type": "ping", "client_time": ', None),
    "a JSON array": ('[{"type": "ping", "client_time": 1}]', None),
    "a number": ("42", None),
    "a string": ('"ping"', None),
    "no type": ('{"client_time": 1, "ref": "r1"}', "r1"),
    "an unknown type": ('{"type": "teleport", "ref": 7}', 7),
    "a missing field": ('{"type": "answer", "question_index": 0, "ref": "r2"}', "r2"),
    "a string question_index": (
        '{"type": "answer", "question_index": "0", "answer": "b", "ref": "r3"}',
        "r3",
    ),
    "a float question_index": (
        '{"type": "answer", "question_index": 0.0, "answer": "b", "ref": 4}',
        4,
    ),
    "a non-string answer": (
        '{"type": "answer", "question_index": 0, "answer": 1, "ref": "r5"}',
        "r5",
    ),
    "a non-bool takeover": ('{"type": "resume", "takeover": "yes"}', None),
    "a non-number client_time": ('{"type": "ping", "client_time": "now"}', None),
    "a start without interview_id": ('{"type": "start"}', None),
    "an unknown signal": ('{"type": "signal", "kind": "telepathy"}', None),
    "a second auth": ('{"type": "auth", "token": "again"}', None),
}


@pytest.mark.parametrize(("text", "ref"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_bad_frame_gets_bad_frame_and_the_connection_stays_open(
    server: Server, text: str, ref: Ref
) -> None:
    alice = await attached(server)
    await alice.send_raw(text)
    error = await alice.expect_error("bad_frame")
    assert error.get("ref") == ref
    assert error["message"]
    await alice.ping()

    stored = await server.storage.active_attempt(ALICE)
    assert stored is not None and stored.answers == ()
    await assert_serves_others(server)


async def test_a_binary_frame_is_a_bad_frame_and_the_connection_stays_open(
    server: Server,
) -> None:
    alice = await attached(server)
    await alice.send_raw(json.dumps({"type": "ping", "client_time": 1}).encode())
    await alice.expect_error("bad_frame")
    await alice.ping()
    await assert_serves_others(server)


async def test_a_burst_of_bad_frames_is_closed_as_flooding(server: Server) -> None:
    alice = await attached(server)
    for _ in range(50):
        await alice.send_raw("not json")

    frames, code = await alice.frames_until_close()
    assert code == 4429
    assert {frame["code"] for frame in frames} == {"bad_frame"}
    # A burst of 20 bad frames is tolerated (refilling at 1/s): the 21st closes.
    assert 20 <= len(frames) <= 22
    await assert_serves_others(server)


# -- rate limits and flooding ----------------------------------------------------------


async def test_frames_over_the_burst_are_dropped_with_rate_limited(
    server: Server,
) -> None:
    alice = await attached(server)
    for n in range(100):
        await alice.send({"type": "ping", "client_time": n})

    replies = [await alice.receive() for _ in range(100)]
    pongs = [frame for frame in replies if frame["type"] == "pong"]
    dropped = [frame for frame in replies if frame["type"] == "error"]
    assert len(pongs) + len(dropped) == 100
    assert {frame["code"] for frame in dropped} == {"rate_limited"}
    # auth and start spent 2 of the burst of 50; 20 per second come back meanwhile.
    assert len(pongs) >= 48 and dropped
    times = [pong["client_time"] for pong in pongs]
    assert times == sorted(times) and times[:48] == list(range(48))
    await alice.ping()
    await assert_serves_others(server)


async def test_sustained_flooding_is_closed_with_4429(database_url: str) -> None:
    settings = make_settings(
        database_url, flood_close_s=1.0, rate_per_s=5, rate_burst=5
    )
    async with served(settings) as server:
        alice = await attached(server)
        began = time.monotonic()
        async with flooding(alice, per_s=100):
            frames, code = await alice.frames_until_close(timeout=UNIT_S + 1)
        assert code == 4429
        assert time.monotonic() - began >= 1.0
        kinds = {frame.get("code", frame["type"]) for frame in frames}
        assert kinds == {"pong", "rate_limited"}
        await assert_serves_others(server)


async def test_a_frame_over_the_size_limit_closes_with_1009(database_url: str) -> None:
    async with served(make_settings(database_url, max_frame_bytes=4096)) as server:
        alice = await attached(server)
        answer = {"type": "answer", "question_index": 0, "answer": "x" * 4096}
        await alice.send(answer)
        assert await alice.closed() == 1009

        stored = await server.storage.active_attempt(ALICE)
        assert stored is not None and stored.answers == ()
        await assert_serves_others(server)


async def test_an_answer_over_the_length_limit_gets_answer_too_long(
    database_url: str,
) -> None:
    async with served(make_settings(database_url, max_answer_chars=10)) as server:
        alice = await attached(server)
        long = {"type": "answer", "question_index": 0, "answer": "x" * 11, "ref": 9}
        await alice.send(long)
        error = await alice.expect_error("answer_too_long")
        assert error["ref"] == 9
        await alice.send({"type": "draft", "question_index": 0, "answer": "y" * 11})
        await alice.expect_error("answer_too_long")
        await alice.ping()

        fits = {"type": "answer", "question_index": 0, "answer": "x" * 10, "ref": 10}
        await alice.send(fits)
        ack = await alice.expect("answer_ack")
        assert ack == ack | {"ref": 10, "status": "accepted"}
        await assert_serves_others(server)


# -- sessions that are not yours -----------------------------------------------------


async def test_a_candidate_cannot_resume_or_touch_another_candidates_attempt(
    server: Server,
) -> None:
    interview = await server.interview([60, 60], invite=("alice", "bob"))
    alice = await server.candidate("alice")
    await alice.send({"type": "start", "interview_id": interview})
    mine = await alice.expect("state")

    bob = await server.candidate("bob")
    assert bob.hello["active_session"] is None
    await bob.send({"type": "resume", "takeover": True})
    await bob.expect_error("no_active_session")
    await bob.send({"type": "answer", "question_index": 0, "answer": "bob's"})
    await bob.expect_error("not_attached")
    await bob.send({"type": "start", "interview_id": interview})
    his = await bob.expect("state")
    assert his["session_id"] != mine["session_id"]
    await bob.send({"type": "answer", "question_index": 0, "answer": "bob's"})
    assert (await bob.expect("answer_ack"))["status"] == "accepted"

    alices = await server.storage.load_attempt(mine["session_id"])
    assert alices is not None and alices.answers == ()
    bobs = await server.storage.load_attempt(his["session_id"])
    assert bobs is not None and [a.text for a in bobs.answers] == ["bob's"]
    await alice.send({"type": "answer", "question_index": 0, "answer": "alice's"})
    assert (await alice.expect("answer_ack"))["status"] == "accepted"


async def test_starting_an_interview_one_was_not_invited_to_is_not_found(
    server: Server,
) -> None:
    theirs = await server.interview([60], invite=("bob",))
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": theirs})
    await alice.expect_error("not_found")
    await alice.ping()
    assert await server.storage.active_attempt(ALICE) is None
    await assert_serves_others(server)


async def test_starting_an_interview_that_does_not_exist_is_not_found(
    server: Server,
) -> None:
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": "no-such-interview"})
    await alice.expect_error("not_found")
    await alice.ping()
    await assert_serves_others(server)


async def test_answers_and_drafts_before_start_are_not_attached(
    server: Server,
) -> None:
    await server.interview([60])
    alice = await server.candidate()
    await alice.send({"type": "answer", "question_index": 0, "answer": "b", "ref": 1})
    await alice.expect_error("not_attached")
    await alice.send({"type": "draft", "question_index": 0, "answer": "b"})
    await alice.expect_error("not_attached")
    await alice.ping()
    await assert_serves_others(server)


async def test_starting_while_an_attempt_is_in_progress_is_already_in_progress(
    server: Server,
) -> None:
    other = await server.interview([60])
    alice = await attached(server)
    await alice.send({"type": "start", "interview_id": other})
    await alice.expect_error("already_in_progress")

    second = await server.candidate()
    await second.send({"type": "start", "interview_id": other})
    await second.expect_error("already_in_progress")
    await alice.ping()
    await assert_serves_others(server)


# -- answers for the wrong question -------------------------------------------------


async def test_an_answer_for_a_future_question_is_invalid_then_state(
    server: Server,
) -> None:
    alice = await attached(server)
    await alice.send({"type": "answer", "question_index": 2, "answer": "b", "ref": 3})
    error = await alice.expect_error("invalid_question_index")
    assert error["ref"] == 3
    assert (await alice.expect("state"))["question_index"] == 0
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    assert (await alice.expect("answer_ack"))["status"] == "accepted"
    await assert_serves_others(server)


async def test_resending_the_accepted_answer_is_a_duplicate_stored_once(
    server: Server,
) -> None:
    alice = await attached(server)
    answer = {"type": "answer", "question_index": 0, "answer": "b", "ref": "a1"}
    await alice.send(answer)
    first = await alice.expect("answer_ack")
    state = await alice.expect("state")
    await alice.send(answer | {"ref": "a2"})
    again = await alice.expect("answer_ack")
    assert again == first | {"ref": "a2", "status": "duplicate"}
    await alice.ping()  # no state follows a duplicate

    stored = await server.storage.load_attempt(state["session_id"])
    assert stored is not None and [a.text for a in stored.answers] == ["b"]
    audit = await server.storage.audit_log(state["session_id"])
    accepted = [e for e in audit if e.kind is AuditKind.ANSWER_ACCEPTED]
    assert len(accepted) == 1
    await assert_serves_others(server)


async def test_a_different_answer_for_an_answered_question_is_invalid_then_state(
    server: Server,
) -> None:
    alice = await attached(server)
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    await alice.expect("answer_ack")
    state = await alice.expect("state")
    await alice.send({"type": "answer", "question_index": 0, "answer": "a", "ref": 5})
    error = await alice.expect_error("invalid_question_index")
    assert error["ref"] == 5
    assert (await alice.expect("state"))["question_index"] == 1

    stored = await server.storage.load_attempt(state["session_id"])
    assert stored is not None and [a.text for a in stored.answers] == ["b"]
    await assert_serves_others(server)


async def test_an_answer_after_the_deadline_is_too_late_and_kept_in_the_audit_log(
    server: Server,
) -> None:
    interview = await server.interview([1, 60], grace_s=0)
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    state = await alice.expect("state")
    expired = await alice.expect("time_expired", timeout=UNIT_S + 1)
    assert expired["question_index"] == 0
    assert (await alice.expect("state"))["question_index"] == 1

    late = {"type": "answer", "question_index": 0, "answer": "late!", "ref": "L"}
    await alice.send(late)
    error = await alice.expect_error("too_late")
    assert error["ref"] == "L"
    assert (await alice.expect("state"))["question_index"] == 1

    session_id = state["session_id"]
    stored = await server.storage.load_attempt(session_id)
    assert stored is not None and stored.answers[0].text == ""
    audit = await server.storage.audit_log(session_id)
    kept = [e.data for e in audit if e.kind is AuditKind.LATE_ANSWER]
    assert kept == [{"question_index": 0, "text": "late!"}]
    await assert_serves_others(server)


async def test_deeply_nested_json_is_a_bad_frame_and_the_connection_stays_open(
    server: Server,
) -> None:
    alice = await attached(server)
    await alice.send_raw("[" * 200_000 + "]" * 200_000)
    await alice.expect_error("bad_frame")
    await alice.ping()
    await assert_serves_others(server)


@pytest.mark.parametrize("text", ["a\u0000b", "\ud800"], ids=["nul", "lone-surrogate"])
async def test_text_no_database_can_store_is_a_bad_frame_and_the_connection_stays_open(
    server: Server, text: str
) -> None:
    # Both closed the socket with 1011 before: PostgreSQL refuses NUL, and no
    # driver encodes a lone surrogate.
    alice = await attached(server)
    for kind in ("draft", "answer"):
        frame = {"type": kind, "question_index": 0, "answer": text, "ref": kind}
        await alice.send_raw(json.dumps(frame))
        await alice.expect_error("bad_frame")
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    assert (await alice.expect("answer_ack"))["status"] == "accepted"
    await assert_serves_others(server)


# -- close codes chosen by the client -------------------------------------------------

CLIENT_CLOSE_CODES = (4999, 3000, 4000, 1234, 1004, 2999, 5000, 65535)


async def close_with(client: Candidate, code: int) -> None:
    """Send a close frame with ``code``, valid or not (the library refuses bad ones)."""
    frame = Frame(Opcode.CLOSE, struct.pack("!H", code) + b"bye")
    client.ws.protocol.send_frame(frame)
    client.ws.send_data()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(UNIT_S):
            await client.ws.wait_closed()


async def test_close_codes_a_client_chooses_add_no_metric_series(
    server: Server,
) -> None:
    for code in CLIENT_CLOSE_CODES:
        await close_with(await server.candidate(f"c{code}"), code)

    async with httpx.AsyncClient(base_url=server.http) as http:

        async def all_closed() -> bool:
            text = (await http.get("/metrics")).text
            return "interview_sockets_open 0.0" in text

        await eventually(all_closed)
        text = (await http.get("/metrics")).text
    series = dict(
        re.findall(r'interview_socket_closes_total\{code="(\w+)"\} (\S+)', text)
    )
    assert set(series) <= {*map(str, KNOWN_CLOSE_CODES), "other"}, series
    assert sum(float(count) for count in series.values()) == len(CLIENT_CLOSE_CODES)
    assert float(series["other"]) >= 3  # 4999, 3000 and 4000 at least
