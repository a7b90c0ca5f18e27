"""A whole interview over a real socket, graded offline and read by a recruiter."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._client import UNIT_S, eventually
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def test_a_finished_interview_is_graded_offline_and_summarised(
    server: Server,
) -> None:
    interview = await server.interview([60, 60, 60])
    alice = await server.candidate()
    await alice.send({"type": "start", "interview_id": interview})
    session_id = (await alice.expect("state"))["session_id"]
    answers = ["b", "an index is a b-tree", "def f(x):\n    return x\n"]
    for index, answer in enumerate(answers):
        await alice.send({"type": "answer", "question_index": index, "answer": answer})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        await alice.expect("state" if index < len(answers) - 1 else "completed")
    await alice.close()

    headers = {"Authorization": f"Bearer {server.token('rita', role='recruiter')}"}
    async with httpx.AsyncClient(base_url=server.http, headers=headers) as http:
        body: dict[str, object] = {}

        async def evaluated() -> bool:
            nonlocal body
            body = (await http.get(f"/api/sessions/{session_id}")).json()
            return body["status"] == "evaluated"

        await eventually(evaluated, timeout=2 * UNIT_S)
        listed = (await http.get(f"/api/interviews/{interview}/sessions")).json()

    assert body["summary"] and body["recommendation"] in (
        "strong_hire",
        "hire",
        "maybe",
        "no_hire",
    )
    answers_graded = body["answers"]
    assert isinstance(answers_graded, list)
    assert [answer["evaluation_status"] for answer in answers_graded] == [
        "evaluated"
    ] * 3
    assert answers_graded[0]["score"] == 5  # the MCQ: exact match, full points
    assert all(answer["model"] for answer in answers_graded)
    # offline grades of the short answer and the code wait for a person
    assert [answer["provisional"] for answer in answers_graded] == [False, True, True]
    assert body["max_score"] == 15
    assert [session["status"] for session in listed["sessions"]] == ["evaluated"]
