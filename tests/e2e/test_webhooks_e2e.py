"""Webhooks from a real server: an interview taken over a real socket is reported
to a real receiver on 127.0.0.1, signed (verified with the ``standardwebhooks``
reference); and a sender killed with SIGKILL mid-delivery loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from protocol.definition import InterviewDefinition, parse_definition
from protocol.ids import UserId
from server.storage.attempts import DatabaseStorage
from server.storage.webhooks import WebhookStore
from tests.e2e._client import TIME_FACTOR, UNIT_S, eventually
from tests.e2e.conftest import make_settings, question, served, spawned
from tests.integration._grading import FakeClock
from tests.integration._webhooks import complete, endpoint, wall
from tests.receiver import Receiver, Reply, receiving

pytestmark = pytest.mark.e2e

ALLOWED = {"webhook_allow_private": True, "webhook_poll_ms": 50}


async def test_a_taken_interview_is_reported_completed_then_evaluated(
    database_url: str,
) -> None:
    settings = make_settings(database_url, **ALLOWED)
    async with receiving() as receiver, served(settings) as server:
        headers = {"Authorization": f"Bearer {server.token('rita', role='recruiter')}"}
        async with httpx.AsyncClient(base_url=server.http, headers=headers) as http:
            response = await http.post(
                "/api/webhooks",
                json={
                    "url": receiver.url(),
                    "event_types": ["session.completed", "session.evaluated"],
                },
            )
        assert response.status_code == 201, response.text
        secret = response.json()["secret"]
        interview = await server.interview([60])
        alice = await server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        session_id = (await alice.expect("state"))["session_id"]
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        await alice.expect("answer_ack")
        await alice.expect("completed")
        await alice.close()

        completed = await receiver.next(timeout=2 * UNIT_S)
        evaluated = await receiver.next(timeout=2 * UNIT_S)

    verified = [
        Webhook(secret).verify(request.body, request.headers)
        for request in (completed, evaluated)
    ]
    assert [payload["type"] for payload in verified] == [
        "session.completed",
        "session.evaluated",
    ]
    assert {payload["data"]["session_id"] for payload in verified} == {session_id}
    assert verified[1]["data"]["final_score"] == 5  # the MCQ, right
    assert completed.headers["webhook-id"] != evaluated.headers["webhook-id"]


async def test_a_sender_killed_mid_delivery_loses_nothing(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    clock = FakeClock(wall())
    store = WebhookStore(storage.database)
    interview = await storage.create_interview(
        org="acme",
        created_by=UserId("rita"),
        definition=_one_question(),
        now=clock(),
    )
    events = 12
    timeout_s = 3 * TIME_FACTOR  # the lease lasts twice this
    env = {
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_TIMEOUT_S": str(timeout_s),
        "WEBHOOK_POLL_MS": "50",
    }
    # The first attempts hang in the receiver until the sender is killed.
    held = Receiver(replies=[Reply(204, delay_s=4 * timeout_s)] * events)
    async with receiving(held) as receiver:
        hook = await endpoint(store, receiver.url(), clock)
        for _ in range(events):
            await complete(storage, interview, clock)
        log = tmp_path / "server.log"
        async with spawned(database_url, storage, log, env=env) as first:
            in_flight = {
                (await receiver.next()).headers["webhook-id"] for _ in range(events)
            }
            await first.kill()
        async with spawned(database_url, storage, log, env=env):
            wait = 2 * timeout_s + 5.5 + UNIT_S  # the lease, or a retry's delay
            again = [await receiver.next(timeout=wait) for _ in range(events)]

            async def recorded() -> bool:
                page = await store.deliveries("acme", hook.id, after=None, limit=100)
                assert page is not None
                return all(d.status == "delivered" for d in page.deliveries)

            await eventually(recorded)

    assert len(in_flight) == events
    assert {request.headers["webhook-id"] for request in again} == in_flight
    for request in again:
        assert Webhook(hook.secrets.current).verify(request.body, request.headers)
        assert json.loads(request.body)["type"] == "session.completed"


def _one_question() -> InterviewDefinition:
    return parse_definition({"title": "Killed", "questions": [question("mcq", 60)]})
