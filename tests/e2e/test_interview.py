"""Whole interviews over a real socket against a real server (issue 2, item 6)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._client import UNIT_S, eventually
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def test_answering_question_one_early_then_question_two_is_accepted(
    server: Server,
) -> None:
    interview = await server.interview([60, 60, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    first = await alice.expect("state")
    assert first["question_index"] == 0 and first["question_count"] == 3
    assert "correct_answer" not in first["question"]

    await alice.send({"type": "answer", "question_index": 0, "answer": "b", "ref": 1})
    ack = await alice.expect("answer_ack")
    assert ack == ack | {"ref": 1, "question_index": 0, "status": "accepted"}
    second = await alice.expect("state")
    assert second["question_index"] == 1
    assert second["deadline"] - second["server_time"] == pytest.approx(60_000, abs=50)

    await alice.send({"type": "answer", "question_index": 1, "answer": "b-tree"})
    assert (await alice.expect("answer_ack"))["status"] == "accepted"
    assert (await alice.expect("state"))["question_index"] == 2


async def test_a_question_expires_while_connected_and_the_draft_is_submitted(
    server: Server,
) -> None:
    interview = await server.interview([1, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    state = await alice.expect("state")
    await alice.send({"type": "draft", "question_index": 0, "answer": "a"})
    assert (await alice.expect("draft_ack"))["question_index"] == 0

    expired = await alice.expect("time_expired", timeout=UNIT_S + 1)
    assert expired == expired | {"question_index": 0, "had_draft": True}
    after = await alice.expect("state")
    assert after["question_index"] == 1
    assert after["server_time"] >= state["deadline"]
    assert alice.ticks, "ticks arrive while a question runs"

    session = await server.storage.load_attempt(state["session_id"])
    assert session is not None and session.answers[0].text == "a"
    assert session.answers[0].time_expired


async def test_questions_expire_while_disconnected_and_resume_finds_the_right_one(
    server: Server,
) -> None:
    interview = await server.interview([1, 1, 60], grace_s=0)
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    state = await alice.expect("state")
    await alice.close()

    session_id = state["session_id"]

    async def both_expired() -> bool:
        stored = await server.storage.load_attempt(session_id)
        return stored is not None and len(stored.answers) == 2

    await eventually(both_expired, timeout=UNIT_S + 2)  # the sweeper did it
    back = await server.candidate()
    await back.send({"type": "resume"})
    resumed = await back.expect("state")
    assert resumed["session_id"] == session_id
    assert resumed["question_index"] == 2
    assert resumed["remaining_ms"] == resumed["deadline"] - resumed["server_time"]
    stored = await server.storage.load_attempt(session_id)
    assert stored is not None
    assert [a.time_expired for a in stored.answers] == [True, True]


async def test_a_refresh_mid_question_resumes_with_the_remaining_time(
    server: Server,
) -> None:
    interview = await server.interview([30, 30])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    state = await alice.expect("state")
    await alice.close()

    again = await server.candidate()
    active = again.hello["active_session"]
    assert active["session_id"] == state["session_id"]
    assert active["question_index"] == 0
    assert 0 < active["remaining_ms"] <= state["remaining_ms"]
    await again.send({"type": "resume"})
    resumed = await again.expect("state")
    assert resumed["deadline"] == state["deadline"]
    assert resumed["remaining_ms"] == state["deadline"] - resumed["server_time"]
    assert resumed["remaining_ms"] < state["remaining_ms"]


async def test_a_second_tab_is_locked_out_then_takes_over(server: Server) -> None:
    interview = await server.interview([60, 60])
    first = await server.candidate()
    await first.send({"type": "start", "interview_id": interview})
    await first.expect("state")

    second = await server.candidate()
    await second.send({"type": "resume"})
    await second.expect_error("session_locked")
    await second.send({"type": "resume", "takeover": True})
    assert (await second.expect("state"))["question_index"] == 0

    assert (await first.expect("superseded"))["reason"] == "taken_over"
    assert await first.closed() == 4409
    await second.send({"type": "answer", "question_index": 0, "answer": "b"})
    assert (await second.expect("answer_ack"))["status"] == "accepted"


async def test_start_over_keeps_the_old_attempt_and_attempts_run_out(
    server: Server,
) -> None:
    interview = await server.interview([60, 60], max_attempts=2)
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    first = await alice.expect("state")
    await alice.send({"type": "answer", "question_index": 0, "answer": "a"})
    await alice.expect("answer_ack")
    await alice.expect("state")

    await alice.send({"type": "restart"})
    second = await alice.expect("state")
    assert second["attempt"] == 2 and second["question_index"] == 0
    assert second["session_id"] != first["session_id"]
    old = await server.storage.load_attempt(first["session_id"])
    assert old is not None and old.status == "abandoned" and len(old.answers) == 1

    await alice.send({"type": "restart"})
    await alice.expect_error("attempts_exhausted")
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    assert (await alice.expect("answer_ack"))["status"] == "accepted"


async def test_the_last_answer_completes_the_interview_and_closes(
    server: Server,
) -> None:
    interview = await server.interview([60, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    await alice.expect("state")
    for index in range(2):
        await alice.send({"type": "answer", "question_index": index, "answer": "b"})
        await alice.expect("answer_ack")
        if index == 0:
            await alice.expect("state")
    done = await alice.expect("completed")
    assert done["session_id"]
    assert await alice.closed() == 1000

    again = await server.candidate()
    await again.send({"type": "start", "interview_id": interview})
    state = await again.expect("state")
    assert state["attempt"] == 2


async def test_metrics_count_open_sockets_answers_and_closes(server: Server) -> None:
    interview = await server.interview([60, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    await alice.expect("state")
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    await alice.expect("answer_ack")

    async with httpx.AsyncClient(base_url=server.http) as http:
        text = (await http.get("/metrics")).text
        assert "interview_sockets_open 1.0" in text
        assert "interview_sockets_attached 1.0" in text
        assert "interview_answers_recorded_total 1.0" in text
        await alice.close()

        async def closed_counted() -> bool:
            text = (await http.get("/metrics")).text
            return 'interview_socket_closes_total{code="1000"} 1.0' in text

        await eventually(closed_counted)
