"""Two server processes on one database and one Redis (PRODUCT.md section 2).

Each instance is ``python -m server serve`` in a child process with ``REDIS_URL`` and
a fresh ``REDIS_PREFIX``; the database is the test's (PostgreSQL with DATABASE_URL,
else a SQLite file both processes share; never skipped). Children are always killed
on the way out. With ``REDIS_URL`` the instances only enqueue grading jobs: a test that
needs grades starts ``python -m server worker`` (:meth:`Cluster.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocol.attempt import Status
from protocol.audit import AuditKind
from protocol.ids import InterviewId, SessionId
from server.candidate.sweeper import settle
from server.cluster.bus import RedisBus
from server.cluster.client import RedisClient
from server.storage.attempts import DatabaseStorage
from server.storage.events import EventLog
from tests.e2e._client import TIME_FACTOR, UNIT_S, Frame, eventually
from tests.e2e.conftest import (
    ROOT,
    SECRET,
    STARTUP_S,
    Server,
    Spawned,
    _healthy,
    free_port,
    make_settings,
)
from tests.e2e.test_monitor import assert_in_order, events_until, monitor, subscribe

pytestmark = pytest.mark.e2e

TICK_MS = 200
PUSH_SLACK_MS = 300 * TIME_FACTOR
"""How late after its cause a push may arrive on a loaded machine."""
LOCK_LEASE_S = 10.0
"""How long a crashed instance's Redis lock lease lasts (server/cluster/lock.py)."""


@dataclass
class Cluster:
    """What a test needs to start instances on one database and one Redis prefix."""

    database_url: str
    redis_url: str
    prefix: str
    storage: DatabaseStorage
    logs: Path

    @property
    def env(self) -> dict[str, str]:
        """What every process of the cluster is started with."""
        return {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            "JWT_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
            "TICK_INTERVAL_MS": str(TICK_MS),
            "SWEEP_INTERVAL_MS": "100",
        }

    @contextlib.asynccontextmanager
    async def instance(self, name: str) -> AsyncIterator[Spawned]:
        """``interview-server serve`` on a free port; always killed on the way out."""
        port = free_port()
        env = self.env
        command = ["-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)]
        log = self.logs / f"{name}.log"
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *command,
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=output,
            )
        try:
            await _healthy(process, port, log)
            settings = make_settings(self.database_url, redis_url=self.redis_url)
            yield Spawned(Server(settings, port, self.storage), process, log)
        finally:
            if process.returncode is None:
                process.kill()
            async with asyncio.timeout(UNIT_S):
                await process.wait()

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[asyncio.subprocess.Process]:
        """``interview-server worker``: with REDIS_URL set the instances only enqueue
        grading jobs, and this process grades them; always killed on the way out."""
        log = self.logs / "worker.log"
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *["-m", "server", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=output,
            )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            async with asyncio.timeout(UNIT_S):
                await process.wait()

    @contextlib.asynccontextmanager
    async def pair(self) -> AsyncIterator[tuple[Server, Server]]:
        async with self.instance("a") as a, self.instance("b") as b:
            yield a.server, b.server


@pytest.fixture
def cluster(
    database_url: str,
    storage: DatabaseStorage,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> Cluster:
    return Cluster(database_url, redis_url, redis_prefix, storage, tmp_path)


async def test_a_candidate_resumes_on_another_instance_with_the_time_left(
    cluster: Cluster,
) -> None:
    async with cluster.pair() as (a, b):
        interview = await a.interview([60, 60])
        alice = await a.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        await alice.expect("state")
        await alice.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await alice.expect("answer_ack"))["status"] == "accepted"
        before = await alice.expect("state")
        await alice.close()

        again = await b.candidate()
        await again.send({"type": "resume"})
        resumed = await again.expect("state")

        assert resumed["session_id"] == before["session_id"]
        assert resumed["question_index"] == 1
        assert resumed["deadline"] == before["deadline"]
        assert resumed["remaining_ms"] == resumed["deadline"] - resumed["server_time"]
        assert resumed["remaining_ms"] <= before["remaining_ms"]


async def test_a_tab_on_another_instance_is_locked_out_then_takes_over_with_4409(
    cluster: Cluster,
) -> None:
    async with cluster.pair() as (a, b):
        interview = await a.interview([60, 60])
        first = await a.candidate()
        await first.send({"type": "start", "interview_id": interview})
        await first.expect("state")

        second = await b.candidate()
        await second.send({"type": "resume"})
        await second.expect_error("session_locked")
        await second.send({"type": "resume", "takeover": True})
        assert (await second.expect("state"))["question_index"] == 0

        frames, code = await first.frames_until_close()
        assert [f["type"] for f in frames] == ["superseded"]
        assert code == 4409
        await second.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await second.expect("answer_ack"))["status"] == "accepted"


async def test_a_question_expiring_on_one_instance_is_pushed_by_it_once(
    cluster: Cluster,
) -> None:
    async with cluster.pair() as (a, _):
        interview = await a.interview([1, 60], grace_s=0)
        alice = await a.candidate()
        await alice.send({"type": "start", "interview_id": interview})
        state = await alice.expect("state")

        expired = await alice.expect("time_expired", timeout=UNIT_S + 1)
        after = await alice.expect("state")

        assert expired["question_index"] == 0
        assert after["question_index"] == 1
        assert after["server_time"] - state["deadline"] <= TICK_MS + PUSH_SLACK_MS
        log = await cluster.storage.audit_log(SessionId(state["session_id"]))
        assert [e.data for e in log if e.kind is AuditKind.EXPIRED] == [
            {"question_index": 0, "had_draft": False}
        ]


async def test_an_expiry_stored_by_another_instance_is_pushed_through_redis(
    cluster: Cluster,
) -> None:
    elsewhere = RedisClient(cluster.redis_url, prefix=cluster.prefix)
    bus = RedisBus(elsewhere)
    await elsewhere.start()
    try:
        async with cluster.pair() as (a, _):
            interview = await a.interview([60, 60])
            alice = await a.candidate()
            await alice.send({"type": "start", "interview_id": interview})
            state = await alice.expect("state")
            attempt = await cluster.storage.load_attempt(state["session_id"])
            assert attempt is not None

            # Another instance whose clock is past the deadline expires question 0.
            await settle(cluster.storage, bus, attempt, attempt.closes_at + 1)

            expired = await alice.expect("time_expired")
            after = await alice.expect("state")
            assert expired["question_index"] == 0
            assert after["question_index"] == 1
    finally:
        await elsewhere.close()


async def test_an_instance_killed_mid_interview_loses_no_acknowledged_answer(
    cluster: Cluster,
) -> None:
    async with cluster.instance("b") as b:
        async with cluster.instance("a") as a:
            interview = await a.server.interview([60] * 6)
            alice = await a.server.candidate()
            await alice.send({"type": "start", "interview_id": interview})
            state = await alice.expect("state")
            acknowledged = []
            for index in range(3):
                answer = f"answer {index}"
                await alice.send(
                    {"type": "answer", "question_index": index, "answer": answer}
                )
                if (await alice.expect("answer_ack"))["status"] == "accepted":
                    acknowledged.append((index, answer))
                await alice.expect("state")

            await a.kill()
            assert await alice.closed() == 1006

        back = await b.server.candidate()
        # The dead instance's lease lasts until it lapses; the candidate takes over.
        await back.send({"type": "resume", "takeover": True})
        resumed = await back.expect("state")

        assert resumed["session_id"] == state["session_id"]
        assert resumed["question_index"] == 3
        stored = await cluster.storage.load_attempt(SessionId(state["session_id"]))
        assert stored is not None
        assert [(x.question_index, x.text) for x in stored.answers] == acknowledged
        assert len(acknowledged) == 3
        await back.send({"type": "answer", "question_index": 3, "answer": "more"})
        assert (await back.expect("answer_ack"))["status"] == "accepted"


async def test_after_a_crash_the_lease_resumes_on_another_instance_at_once(
    cluster: Cluster,
) -> None:
    async with cluster.instance("b") as b:
        async with cluster.instance("a") as a:
            interview = await a.server.interview([60, 60])
            alice = await a.server.candidate()
            await alice.send({"type": "start", "interview_id": interview})
            state = await alice.expect("state")

            await a.kill()
            killed_at = time.monotonic()
            assert await alice.closed() == 1006

        # The dead instance's Redis lease still holds the lock: a plain resume is
        # locked out until it lapses ...
        other = await b.server.candidate()
        await other.send({"type": "resume"})
        await other.expect_error("session_locked")
        # ... but the client with the lease of its last state is back at once.
        back = await b.server.candidate()
        await back.send({"type": "resume", "lease": state["lease"]})
        resumed = await back.receive()
        waited_s = time.monotonic() - killed_at

        assert resumed["type"] == "state", resumed
        assert waited_s < LOCK_LEASE_S
        assert resumed["session_id"] == state["session_id"]
        assert resumed["question_index"] == 0
        assert resumed["deadline"] == state["deadline"]
        await back.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await back.expect("answer_ack"))["status"] == "accepted"
        log = await cluster.storage.audit_log(SessionId(state["session_id"]))
        assert [e.data for e in log if e.kind is AuditKind.ATTACHED] == [
            {},
            {"lease": True, "taken_over": True},
        ]


# -- the recruiter monitor across instances (PROTOCOL.md section 2) --------------------


async def take(server: Server, interview: InterviewId, sub: str, questions: int) -> str:
    """``sub`` starts ``interview`` on ``server`` and answers its ``questions``, each
    acknowledged; the session, once the server closed the finished socket."""
    candidate = await server.candidate(sub)
    await candidate.send({"type": "start", "interview_id": interview})
    session = str((await candidate.expect("state"))["session_id"])
    for index in range(questions):
        await candidate.send({"type": "answer", "question_index": index, "answer": "b"})
        assert (await candidate.expect("answer_ack"))["status"] == "accepted"
        await candidate.expect("state" if index < questions - 1 else "completed")
    assert await candidate.closed() == 1000
    return session


def attempt_kinds(questions: int) -> list[str]:
    """The events of one attempt answering all its ``questions``, ungraded."""
    answers = ["answer_submitted", "question_started"] * questions
    return ["started", "question_started", "connected", *answers[:-1]] + [
        "completed",
        "disconnected",
    ]


def stored(events: list[Frame]) -> list[tuple[int, str, str]]:
    return [(e["cursor"], e["session_id"], e["kind"]) for e in events]


async def log_of(
    cluster: Cluster, interview: InterviewId
) -> list[tuple[int, str, str]]:
    """What ``interview_events`` holds of ``interview``, in cursor order."""
    events = await EventLog(cluster.storage.database).after(interview, 0, 10_000)
    return [(e.cursor, e.session_id, e.kind.value) for e in events]


async def test_a_monitor_on_one_instance_sees_a_candidate_on_the_other_in_order(
    cluster: Cluster,
) -> None:
    async with cluster.pair() as (a, b):
        interview = await a.interview([60, 60])
        watcher = await monitor(b)
        snapshot = await subscribe(watcher, interview)
        assert (snapshot["cursor"], snapshot["sessions"]) == (0, [])

        session = await take(a, interview, "alice", 2)
        events = await events_until(watcher, "disconnected", session)

        assert_in_order(events, 0)
        assert [event["kind"] for event in events] == attempt_kinds(2)
        assert {event["session_id"] for event in events} == {session}
        assert stored(events) == await log_of(cluster, interview)
        await watcher.ping()  # and nothing after it
        await watcher.close()


async def test_grades_of_a_separate_worker_reach_a_monitor_on_another_instance(
    cluster: Cluster,
) -> None:
    async with cluster.pair() as (a, b):
        interview = await a.interview([60])
        watcher = await monitor(b)
        await subscribe(watcher, interview)
        session = await take(a, interview, "alice", 1)
        before = await events_until(watcher, "disconnected", session)
        # With REDIS_URL the instances only enqueue: nothing is graded yet.
        assert "answer_evaluated" not in [event["kind"] for event in before]
        attempt = await cluster.storage.load_attempt(SessionId(session))
        assert attempt is not None and attempt.status is Status.COMPLETED

        async with cluster.worker():
            # The worker imports and connects first, as a child server does.
            first = await watcher.expect("event", timeout=STARTUP_S + 3 * UNIT_S)
            graded = [first, *await events_until(watcher, "evaluated", session)]

        assert_in_order(before + graded, 0)
        assert [event["kind"] for event in graded] == ["answer_evaluated", "evaluated"]
        assert graded[0]["data"] == graded[0]["data"] | {"question_index": 0}
        assert graded[1]["data"]["final_score"] == graded[1]["data"]["max_score"] == 5
        assert stored(before + graded) == await log_of(cluster, interview)
        await watcher.ping()
        await watcher.close()


async def test_two_candidates_answering_on_two_instances_make_one_gapless_log(
    cluster: Cluster,
) -> None:
    questions = 6
    async with cluster.pair() as (a, b):
        interview = await a.interview([60] * questions, invite=("alice", "bob"))
        watchers = [await monitor(a), await monitor(b)]
        for watcher in watchers:
            await subscribe(watcher, interview)

        sessions = await asyncio.gather(
            take(a, interview, "alice", questions), take(b, interview, "bob", questions)
        )

        async def both_disconnected() -> bool:
            kinds = [kind for _, _, kind in await log_of(cluster, interview)]
            return kinds.count("disconnected") == 2

        await eventually(both_disconnected)
        log = await log_of(cluster, interview)
        assert [cursor for cursor, _, _ in log] == list(range(1, len(log) + 1))
        for session in sessions:
            kinds = [kind for _, of, kind in log if of == session]
            assert kinds == attempt_kinds(questions)
        for watcher in watchers:
            seen = [await watcher.expect("event") for _ in log]
            assert_in_order(seen, 0)
            assert stored(seen) == log
            await watcher.ping()  # no repeat after the last one
            await watcher.close()
