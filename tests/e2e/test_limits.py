"""Server-side limits on clients and the server's own restart (PROTOCOL.md section 3).

A reader that falls behind is closed with 4008 rather than holding memory; a server
that stops closes its sockets with 1012, and the candidate resumes on the next one.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import sqlalchemy as sa

from protocol.audit import AuditKind
from protocol.ids import SessionId
from server.storage.tables import audit_log
from tests.e2e._client import UNIT_S, Candidate, eventually
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


# -- what one candidate can add to the database ----------------------------------------


async def audit_size(server: Server, session_id: SessionId) -> tuple[int, int]:
    """The attempt's audit rows and the characters of their data."""
    data = audit_log.c.data
    query = sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(data)), 0)
    ).where(audit_log.c.session_id == session_id)
    row = await server.storage.database.fetch_one(query)
    assert row is not None
    return int(row[0]), int(row[1])


async def test_late_answers_to_one_question_store_a_bounded_amount(
    database_url: str,
) -> None:
    settings = make_settings(database_url, rate_per_s=1000, rate_burst=1000)
    async with served(settings) as server:
        interview = await server.interview([1, 60], grace_s=0)
        alice = await server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        session_id = SessionId((await alice.expect("state"))["session_id"])
        await alice.expect("time_expired", timeout=UNIT_S + 1)
        await alice.expect("state")
        before = await audit_size(server, session_id)

        text = "é" * settings.max_answer_chars
        for _ in range(200):
            await alice.send({"type": "answer", "question_index": 0, "answer": text})
            await alice.expect_error("too_late")
            await alice.expect("state")

        rows, chars = await audit_size(server, session_id)
        assert rows - before[0] == 3  # two texts kept whole, one "not kept"
        # Before: 200 rows of 1,200,000 characters each (escaped).
        assert chars - before[1] < 2 * settings.max_answer_chars + 1_000
        await assert_serves_others(server)


async def test_a_thousand_signals_store_a_bounded_number_of_entries(
    database_url: str,
) -> None:
    settings = make_settings(database_url, rate_per_s=1000, rate_burst=1000)
    async with served(settings) as server:
        interview = await server.interview([60])
        alice = await server.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        session_id = SessionId((await alice.expect("state"))["session_id"])
        kinds = ["focus_lost", "focus_returned"]

        for n in range(1_000):
            await alice.send({"type": "signal", "kind": kinds[n % 2]})
        await alice.send({"type": "ping", "client_time": 1})
        assert (await alice.expect("pong"))["client_time"] == 1  # no error before
        await alice.close()

        async def detached() -> bool:
            log = await server.storage.audit_log(session_id)
            return log[-1].kind is AuditKind.DETACHED

        await eventually(detached)
        log = await server.storage.audit_log(session_id)
        stored = [entry for entry in log if entry.kind is AuditKind.SIGNAL]
        assert 20 <= len(stored) <= 22  # the burst, then one per 5 s
        unrecorded = log[-1].data["unrecorded_signals"]
        assert isinstance(unrecorded, dict)
        assert sum(unrecorded.values()) == 1_000 - len(stored)
        rows, chars = await audit_size(server, session_id)
        assert rows < 30 and chars < 3_000
