"""Archiving an interview and revoking an invitation, seen from the candidate socket
(issue 11): no new attempts, while an attempt in progress goes on to its end."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._client import Candidate
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def staff_post(server: Server, path: str, body: object = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token('rita', role='recruiter')}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(path, json=body, headers=headers)
        if response.status_code >= 400:
            raise AssertionError(response.text)
        return response


async def test_an_archived_interview_refuses_start_until_it_is_unarchived(
    server: Server,
) -> None:
    interview = await server.interview([60])
    archived = await staff_post(server, f"/api/interviews/{interview}/archive")
    closed_at = archived.json()["archived_at"]
    alice = await server.candidate("alice")

    await alice.send({"type": "start", "interview_id": interview})
    refused = await alice.expect_error("not_available")
    headers = {"Authorization": f"Bearer {server.token('rita', role='admin')}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        reopened = await http.delete(
            f"/api/interviews/{interview}/archive", headers=headers
        )
    await alice.send({"type": "start", "interview_id": interview})

    assert refused["closes_at"] == closed_at
    assert "opens_at" not in refused
    assert reopened.json()["archived_at"] is None
    assert (await alice.expect("state"))["question_index"] == 0


async def test_a_revoked_invitation_refuses_start_as_not_invited_until_invited_again(
    server: Server,
) -> None:
    interview = await server.interview([60])
    path = f"/api/interviews/{interview}/invitations"
    await staff_post(server, f"{path}/revoke", {"candidate_id": "alice"})
    alice = await server.candidate("alice")

    await alice.send({"type": "start", "interview_id": interview})
    refused = await alice.expect_error("not_found")
    await staff_post(server, path, {"candidates": [{"id": "alice", "name": "Alice"}]})
    await alice.send({"type": "start", "interview_id": interview})

    assert refused["message"] == "no such interview, or you are not invited"
    assert (await alice.expect("state"))["attempt"] == 1


async def test_an_attempt_in_progress_goes_on_after_revoking_and_archiving(
    server: Server,
) -> None:
    interview = await server.interview([60, 60])
    alice = await server.candidate("alice")
    await alice.send({"type": "start", "interview_id": interview})
    await alice.expect("state")

    path = f"/api/interviews/{interview}/invitations/revoke"
    await staff_post(server, path, {"candidate_id": "alice"})
    await staff_post(server, f"/api/interviews/{interview}/archive")
    await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
    ack = await alice.expect("answer_ack")
    await alice.expect("state")
    await alice.send({"type": "restart"})  # a new attempt: refused, this one stays
    refused = await alice.expect_error("not_found")
    await alice.send({"type": "answer", "question_index": 1, "answer": "done"})

    assert ack["status"] == "accepted"
    assert refused["code"] == "not_found"
    assert (await alice.expect("answer_ack"))["question_index"] == 1
    assert (await alice.expect("completed"))["type"] == "completed"


async def test_a_candidate_with_an_attempt_elsewhere_hears_not_available_first(
    server: Server,
) -> None:
    busy, closed = await server.interview([60]), await server.interview([60])
    await staff_post(server, f"/api/interviews/{closed}/archive")
    alice: Candidate = await server.candidate("alice")
    await alice.send({"type": "start", "interview_id": busy})
    await alice.expect("state")

    second = await server.candidate("alice")
    await second.send({"type": "start", "interview_id": closed})

    assert (await second.expect_error("not_available"))["closes_at"] > 0
