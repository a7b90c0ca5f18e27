"""Server-side limits on clients and the server's own restart (PROTOCOL.md section 3).

A reader that falls behind is closed with 4008 rather than holding memory; a server
that stops closes its sockets with 1012, and the candidate resumes on the next one.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from protocol.audit import AuditKind
from protocol.ids import SessionId
from tests.e2e._client import Candidate, eventually
from tests.e2e.conftest import (
    Server,
    assert_serves_others,
    make_settings,
    served,
)

pytestmark = pytest.mark.e2e

BIG_TEXT = "a question long enough to fill buffers quickly " * 400  # 19,200 chars


async def slow_reader(server: Server) -> Candidate:
    """Alice on a socket with a tiny receive buffer, reading nothing for now.

    ``max_queue=1`` makes the client stop reading from its socket after one frame,
    so the kernel buffers fill, then the server's transport buffer, then its send
    queue.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    except BaseException:
        sock.close()
        raise
    client = await Candidate.open(server.url, sock=sock, max_queue=1)
    await client.login(server.token("alice"))
    return client


async def test_a_reader_that_falls_behind_is_closed_with_4008(
    database_url: str,
) -> None:
    settings = make_settings(
        database_url, send_queue_max=2, rate_per_s=1000, rate_burst=1000
    )
    async with served(settings) as server:
        interview = await server.interview([60, 60], text=BIG_TEXT)
        alice = await slow_reader(server)
        await alice.send({"type": "start", "interview_id": interview})
        state = await alice.expect("state")
        session_id = SessionId(state["session_id"])

        # Each resume while attached is answered with a ~20 kB state frame.
        for _ in range(300):
            await alice.send({"type": "resume"})

        async def closed_too_slow() -> bool:
            audit = await server.storage.audit_log(session_id)
            return any(
                entry.kind is AuditKind.DETACHED
                and entry.data.get("close_code") == 4008
                for entry in audit
            )

        await eventually(closed_too_slow)
        # Reading again drains what was buffered, then the close frame arrives.
        assert await alice.closed() == 4008
        await assert_serves_others(server)

        back = await server.candidate()
        await back.send({"type": "resume"})
        assert (await back.expect("state"))["session_id"] == session_id


async def test_a_stopping_server_closes_with_1012_and_the_candidate_resumes_after(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with served(settings) as server:
        interview = await server.interview([60, 60, 60])
        alice = await server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        await alice.expect("state")
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        await alice.expect("answer_ack")
        before = await alice.expect("state")
        await alice.send({"type": "draft", "question_index": 1, "answer": "half"})
        await alice.expect("draft_ack")
    assert await alice.closed() == 1012

    async with served(settings) as again:
        back = await again.candidate()
        active = back.hello["active_session"]
        assert active["session_id"] == before["session_id"]
        assert active["question_index"] == 1
        await back.send({"type": "resume"})
        resumed = await back.expect("state")
        assert resumed["session_id"] == before["session_id"]
        assert resumed["question_index"] == 1
        assert resumed["deadline"] == before["deadline"]
        assert resumed["draft"] == "half"
        await back.send({"type": "answer", "question_index": 1, "answer": "done"})
        assert (await back.expect("answer_ack"))["status"] == "accepted"
        await assert_serves_others(again)
