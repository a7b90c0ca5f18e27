"""Many sockets on a real ``serve`` process: a graceful stop closes every one with
1012, and near the descriptor limit new sockets are refused at the handshake while
the attached ones keep working (issue 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from server.storage.attempts import DatabaseStorage
from tests.e2e._client import UNIT_S, Candidate
from tests.e2e.conftest import Server, spawned

pytestmark = pytest.mark.e2e

SOCKETS = 300
NOFILE = 256
RESERVED = 64


async def attached(server: Server, interview: str, sub: str) -> Candidate:
    candidate = await server.candidate(sub)
    await candidate.send({"type": "start", "interview_id": interview})
    await candidate.expect("state", timeout=6 * UNIT_S)
    return candidate


async def test_a_graceful_stop_closes_every_one_of_many_sockets_with_1012(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    subs = tuple(f"c{index}" for index in range(SOCKETS))
    async with spawned(database_url, storage, tmp_path / "server.log") as first:
        interview = await first.server.interview([600, 600], invite=subs)
        limit = asyncio.Semaphore(50)

        async def one(sub: str) -> Candidate:
            async with limit:
                return await attached(first.server, interview, sub)

        candidates = await asyncio.gather(*(one(sub) for sub in subs))
        stopping = asyncio.create_task(first.terminate())
        codes = await asyncio.gather(
            *(candidate.closed(timeout=3 * UNIT_S) for candidate in candidates)
        )
        await stopping
    assert {code: codes.count(code) for code in set(codes)} == {1012: SOCKETS}


async def test_near_the_descriptor_limit_new_sockets_get_503_and_attached_ones_work(
    database_url: str, storage: DatabaseStorage, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    subs = tuple(f"c{index}" for index in range(NOFILE))
    env = {"RESERVED_FDS": str(RESERVED), "LOG_LEVEL": "INFO"}
    async with spawned(database_url, storage, log, env=env, nofile=NOFILE) as served:
        server = served.server
        interview = await server.interview([600, 600], invite=subs)
        candidates: list[Candidate] = []
        refused: list[int] = []
        for sub in subs:
            try:
                candidates.append(await attached(server, interview, sub))
            except InvalidStatus as exc:
                refused.append(exc.response.status_code)
                if len(refused) == 3:
                    break
        assert refused == [503, 503, 503]
        assert 50 < len(candidates) < NOFILE - RESERVED

        # One at a time: the reserve covers a bounded number of database
        # connections, and SQLite's pool opens one per concurrent transaction.
        for candidate in candidates:
            await candidate.send({"type": "answer", "question_index": 0, "answer": "b"})
            assert (await candidate.expect("answer_ack"))["status"] == "accepted"
        async with httpx.AsyncClient(base_url=server.http) as http:
            metrics = (await http.get("/metrics")).text
        assert 'interview_socket_refusals_total{reason="descriptors"} 3.0' in metrics
        for candidate in candidates:
            await candidate.close()
    text = log.read_text()
    assert "socket refused: descriptors are nearly all in use" in text
    assert "storage failed" not in text
    assert "unable to open" not in text
