"""SIGKILL the server process and start another on the same database.

Nothing acknowledged is lost, the clock keeps running while no server is up, and the
new process's sweeper expires what closed meanwhile (PRODUCT.md section 6.6).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from protocol.ids import SessionId
from server.storage.attempts import DatabaseStorage
from tests.e2e._client import UNIT_S, eventually
from tests.e2e.conftest import assert_serves_others, spawned

pytestmark = pytest.mark.e2e


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_server_killed_mid_question_loses_nothing_and_the_clock_runs_on(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with spawned(database_url, storage, log) as first:
        interview = await first.server.interview([60, 60, 60])
        alice = await first.server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        await alice.expect("state")
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        before = await alice.expect("state")
        await alice.send({"type": "draft", "question_index": 1, "answer": "half"})
        await alice.expect("draft_ack")

        await first.kill()
        killed_at = now_ms()
        assert await alice.closed() == 1006

    async with spawned(database_url, storage, log) as second:
        back = await second.server.candidate()
        active = back.hello["active_session"]
        assert active == active | {
            "session_id": before["session_id"],
            "question_index": 1,
        }
        await back.send({"type": "resume"})
        resumed = await back.expect("state")
        assert resumed["session_id"] == before["session_id"]
        assert resumed["question_index"] == 1
        assert resumed["deadline"] == before["deadline"]
        assert resumed["server_time"] >= killed_at
        assert resumed["remaining_ms"] == resumed["deadline"] - resumed["server_time"]
        assert resumed["remaining_ms"] <= before["deadline"] - killed_at
        assert resumed["draft"] == "half"

        stored = await storage.load_attempt(SessionId(before["session_id"]))
        assert stored is not None
        assert [(a.text, a.time_expired) for a in stored.answers] == [("b", False)]

        await back.send({"type": "answer", "question_index": 1, "answer": "done"})
        assert (await back.expect("answer_ack"))["status"] == "accepted"
        await assert_serves_others(second.server)


async def test_a_question_that_closes_while_no_server_runs_is_expired_on_restart(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with spawned(database_url, storage, log) as first:
        interview = await first.server.interview([60, 1, 60], grace_s=0)
        alice = await first.server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        state = await alice.expect("state")
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        await alice.expect("answer_ack")
        before = await alice.expect("state")
        await alice.send({"type": "draft", "question_index": 1, "answer": "partial"})
        await alice.expect("draft_ack")
        await alice.close()
        await first.kill()

    session_id = SessionId(state["session_id"])
    closes_at = before["deadline"]  # grace 0
    # Wait, with no server running, until question 1 has closed.
    await asyncio.sleep(max(0, closes_at - now_ms() + 50) / 1000)
    stored = await storage.load_attempt(session_id)
    assert stored is not None and stored.question_index == 1, "nobody expired it yet"

    async with spawned(database_url, storage, log) as second:

        async def expired() -> bool:
            attempt = await storage.load_attempt(session_id)
            return attempt is not None and attempt.question_index == 2

        await eventually(expired, timeout=UNIT_S + 2)  # the new sweeper did it
        stored = await storage.load_attempt(session_id)
        assert stored is not None
        assert [(a.text, a.time_expired) for a in stored.answers] == [
            ("b", False),
            ("partial", True),
        ]
        assert stored.answers[1].submitted_at == closes_at

        back = await second.server.candidate()
        await back.send({"type": "resume"})
        resumed = await back.expect("state")
        assert resumed["question_index"] == 2
        assert resumed["deadline"] == closes_at + 60_000
        await assert_serves_others(second.server)
