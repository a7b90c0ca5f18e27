"""Code answers run through the sandbox inside ``python -m server serve`` itself.

The in-process server of the other tests runs on pytest's asyncio loop; ``serve``
runs uvicorn's own choice (uvloop when installed), whose ``subprocess_exec`` refuses
some of asyncio's options. Only a real ``serve`` process shows what it does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.definition import parse_definition
from protocol.ids import InterviewId, UserId
from server.storage.attempts import DatabaseStorage, Invitee
from tests.e2e._client import UNIT_S, eventually
from tests.e2e.conftest import Server, spawned

pytestmark = pytest.mark.e2e

CODE_QUESTION = {
    "type": "code",
    "text": "Write add(a, b)",
    "points": 5,
    "time_limit_s": 60,
    "language": "python",
    "tests": {
        "entrypoint": "add",
        "cases": [{"args": [1, 2], "expected": 3}, {"args": [2, 5], "expected": 7}],
    },
}


async def code_interview(storage: DatabaseStorage) -> InterviewId:
    definition = parse_definition(
        {"title": "Code", "settings": {"max_attempts": 1}, "questions": [CODE_QUESTION]}
    )
    now = int(time.time() * 1000)
    record = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=now
    )
    invitee = Invitee(id=UserId("alice"), name="User alice", email=None)
    await storage.invite(record.id, [invitee], now)
    return record.id


async def answer(server: Server, interview: InterviewId, code: str) -> str:
    alice = await server.candidate()
    try:
        await alice.send({"type": "start", "interview_id": interview})
        session_id: str = (await alice.expect("state"))["session_id"]
        await alice.send({"type": "answer", "question_index": 0, "answer": code})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        await alice.expect("completed")
    finally:
        await alice.close()
    return session_id


async def graded_answer(server: Server, session_id: str) -> dict[str, Any]:
    """The answer once grading has finished with it or failed a try (a failed try
    is retried only seconds later: the test need not wait for the verdict)."""
    headers = {"Authorization": f"Bearer {server.token('rita', role='recruiter')}"}
    found: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=server.http, headers=headers) as http:

        async def graded() -> bool:
            nonlocal found
            body = (await http.get(f"/api/sessions/{session_id}")).json()
            found = body["answers"][0]
            failed: bool = found["grading_attempts"] > 0
            return failed or found["evaluation_status"] != "pending"

        await eventually(graded, timeout=3 * UNIT_S)
    return found


async def test_a_served_process_runs_the_code_and_scores_its_tests(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with spawned(database_url, storage, log) as served:
        interview = await code_interview(storage)
        session_id = await answer(
            served.server, interview, "def add(a, b):\n    return a + b\n"
        )

        graded = await graded_answer(served.server, session_id)

    assert graded["evaluation_status"] == "evaluated", log.read_text()[-2000:]
    tests = graded["feedback"]["tests"]
    assert tests["outcome"] == "completed"
    assert (tests["passed"], tests["total"]) == (2, 2)
    assert graded["score"] == 5
