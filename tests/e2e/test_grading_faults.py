"""Every answer is graded within a minute of any fault ending (issue 10, item 11).

Real processes, killed with SIGKILL while candidates answer over real sockets: two
``serve`` instances, a grading worker whose grades take a model's while
(tests/e2e/_slow_worker.py) and a private ``redis-server`` without persistence, on
the test's database (PostgreSQL with DATABASE_URL, else a SQLite file all processes
share). Candidates move to another instance when theirs dies. The faults, each
leaving jobs that only the grading leases (server/grading/lease.py) find again:

1. the worker is killed while it grades: its messages stay unacknowledged in Redis;
2. while it is down, Redis hangs, instance A is killed while its sends hang (jobs
   claimed by their answers' commits and never sent), then Redis is killed and
   started empty (the stream of unread jobs and the consumer group are gone);
3. A and the worker start again; the worker is killed again while grading, and
   instance B with it; both start again.

Before the leases, jobs of each kind waited 10 minutes (the old staleness) and a
worker died with Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from protocol.ids import InterviewId
from server.auth import issue_token
from server.storage.attempts import DatabaseStorage
from server.storage.tables import answers, sessions
from tests.conftest import RedisServer, free_port
from tests.e2e._client import TIME_FACTOR, UNIT_S, Candidate, Frame
from tests.e2e.conftest import ROOT, SECRET, Spawned, spawned

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs redis-server on PATH"
    ),
]

CANDIDATES = 40
QUESTIONS = 5
THINK_S = 2.0
"""A candidate's pause before each answer (jittered by half either way)."""
ANSWERS = ("b", "an index is a b-tree", "def f(x):\n    return x\n")
LEASE_S = 5.0
"""GRADING_LEASE_S of every process: short, to keep the test short (30 s in
production: jobs are then found again within 35 s)."""
RECOVERY_S = 60.0 * TIME_FACTOR
"""The goal: every answer graded this soon after the last fault ended."""
ANSWER_WAIT_S = 3 * UNIT_S
"""How long a candidate waits for an ack: a hung Redis holds a socket's next frame
for up to the publish and send timeouts."""


@dataclass
class Ack:
    index: int
    text: str
    instance: str
    at: float


@dataclass
class Cluster:
    """The processes of the test; each start is killed on the way out."""

    env: dict[str, str]
    database_url: str
    storage: DatabaseStorage
    logs: Path
    redis: RedisServer
    stack: contextlib.AsyncExitStack
    instances: dict[str, Spawned] = field(default_factory=dict)
    worker: asyncio.subprocess.Process | None = None

    async def start(self, name: str) -> None:
        log = self.logs / f"{name}.log"
        context = spawned(self.database_url, self.storage, log, env=self.env)
        self.instances[name] = await self.stack.enter_async_context(context)

    async def kill(self, name: str) -> None:
        await self.instances.pop(name).kill()

    def pick(self) -> tuple[str, Spawned]:
        return random.choice(list(self.instances.items()))

    async def start_worker(self) -> None:
        env = self.env | {"GRADING_CONCURRENCY": "8"}
        with (self.logs / "worker.log").open("ab") as output:
            self.worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.e2e._slow_worker",
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=output,
            )

    async def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()
        async with asyncio.timeout(UNIT_S):
            await self.worker.wait()

    async def redis_group(self) -> dict[str, int]:
        """The grading group's unread (lag) and unacknowledged (pending) messages."""
        prefix = self.env["REDIS_PREFIX"]
        async with Redis.from_url(self.redis.url, decode_responses=True) as redis:
            with contextlib.suppress(ResponseError):  # no stream yet
                for group in await redis.xinfo_groups(f"{prefix}grading"):
                    if group["name"] == f"{prefix}graders":
                        lag, pending = group["lag"] or 0, group["pending"]
                        return {"unread": int(lag), "pending": int(pending)}
        return {"unread": 0, "pending": 0}


@pytest.fixture
async def cluster(
    database_url: str, storage: DatabaseStorage, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    redis = RedisServer(free_port())
    await asyncio.to_thread(redis.start)
    env = {
        "REDIS_URL": redis.url,
        "REDIS_PREFIX": redis_prefix,
        "GRADING_LEASE_S": str(LEASE_S),
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    async with contextlib.AsyncExitStack() as stack:
        running = Cluster(env, database_url, storage, tmp_path, redis, stack)
        try:
            yield running
        finally:
            if running.worker is not None and running.worker.returncode is None:
                await running.kill_worker()
            await asyncio.to_thread(redis.stop)


class TryAgain(Exception):
    """The server asked to try again (``internal``: Redis or the database down)."""


RECONNECT = (ConnectionClosed, InvalidHandshake, OSError, TimeoutError, TryAgain)


@dataclass
class Taker:
    """One candidate taking the interview, from instance to instance."""

    name: str
    interview: InterviewId
    cluster: Cluster
    acks: list[Ack] = field(default_factory=list)
    started: bool = False
    lease: str | None = None
    done: bool = False

    async def take(self) -> None:
        token = issue_token(
            SECRET, sub=self.name, role="candidate", name=self.name, now_s=time.time()
        )
        while not self.done:
            instance, spawned_server = self.cluster.pick()
            client: Candidate | None = None
            try:
                client = await Candidate.open(
                    spawned_server.server.url, open_timeout=UNIT_S
                )
                await client.login(token)
                await self._answer_all(client, instance)
            except RECONNECT:
                await asyncio.sleep(random.uniform(0.1, 0.4))
            finally:
                if client is not None:
                    await client.close()

    async def _answer_all(self, client: Candidate, instance: str) -> None:
        state = await self._attach(client)
        while state is not None:
            await asyncio.sleep(THINK_S * random.uniform(0.5, 1.5))
            state = await self._answer(client, instance, state)

    async def _attach(self, client: Candidate) -> Frame | None:
        """The attempt's state, or ``None`` once it is over."""
        if not self.started:
            await client.send({"type": "start", "interview_id": self.interview})
            frame = await client.receive(timeout=ANSWER_WAIT_S)
            if frame["type"] == "state":
                return self._attached(frame)
            self._refused(frame, "already_in_progress")
        lease = {} if self.lease is None else {"lease": self.lease}
        frame = await self._resume(client, lease)
        if frame.get("code") == "session_locked":
            frame = await self._resume(client, {"takeover": True})
        if frame.get("code") == "no_active_session":
            self.done = True  # its last answer was stored, its ack lost
            return None
        assert frame["type"] == "state", frame
        return self._attached(frame)

    async def _resume(self, client: Candidate, fields: Frame) -> Frame:
        await client.send({"type": "resume", **fields})
        frame = await client.receive(timeout=ANSWER_WAIT_S)
        if frame == frame | {"type": "error", "code": "internal"}:
            raise TryAgain(frame["message"])
        return frame

    def _attached(self, state: Frame) -> Frame:
        self.started = True
        self.lease = state["lease"]
        return state

    def _refused(self, frame: Frame, expected: str) -> None:
        assert frame["type"] == "error", frame
        if frame["code"] == "internal":
            raise TryAgain(frame["message"])
        assert frame["code"] == expected, frame
        self.started = True

    async def _answer(
        self, client: Candidate, instance: str, state: Frame
    ) -> Frame | None:
        """Answer the current question; the next state, or ``None`` when done."""
        index = state["question_index"]
        text = ANSWERS[index % len(ANSWERS)]
        await client.send({"type": "answer", "question_index": index, "answer": text})
        frame = await client.receive(timeout=ANSWER_WAIT_S)
        if frame["type"] == "error":
            if frame["code"] == "internal":
                await asyncio.sleep(0.2)
                return state  # not stored: answer again
            assert frame["code"] in ("invalid_question_index", "too_late"), frame
            return self._attached(await client.expect("state", timeout=ANSWER_WAIT_S))
        assert frame["type"] == "answer_ack", frame
        self.acks.append(Ack(index, text, instance, time.monotonic()))
        if index == QUESTIONS - 1:
            self.done = True
            return None
        return self._attached(await client.expect("state", timeout=ANSWER_WAIT_S))


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.05)


async def grading_state(storage: DatabaseStorage, interview: InterviewId) -> list[str]:
    """Every answer's evaluation status and every attempt's status, in one list."""
    of_interview = sessions.c.interview_id == interview
    rows = await storage.database.fetch_all(
        sa.select(answers.c.evaluation_status)
        .select_from(answers.join(sessions, sessions.c.id == answers.c.session_id))
        .where(of_interview)
    )
    attempts = await storage.database.fetch_all(
        sa.select(sessions.c.status).where(of_interview)
    )
    return [row[0] for row in rows] + [row[0] for row in attempts]


async def test_every_answer_is_graded_within_a_minute_of_redis_worker_instance_kills(
    cluster: Cluster, storage: DatabaseStorage
) -> None:
    began = time.monotonic()
    await asyncio.gather(cluster.start("a"), cluster.start("b"), cluster.start_worker())
    names = tuple(f"cand-{i}" for i in range(CANDIDATES))
    interview = await cluster.instances["a"].server.interview(
        [120] * QUESTIONS, invite=names, max_attempts=1
    )
    takers = [Taker(name, interview, cluster) for name in names]
    taking = asyncio.gather(*(taker.take() for taker in takers))

    def acks(instance: str | None = None, after: float = 0.0) -> int:
        return sum(
            1
            for taker in takers
            for ack in taker.acks
            if ack.at > after and instance in (None, ack.instance)
        )

    steps: list[tuple[str, float]] = []

    def step(name: str) -> None:
        steps.append((name, round(time.monotonic() - began, 1)))

    try:
        step("started")
        await until(lambda: acks() >= CANDIDATES // 2, 3 * UNIT_S)
        step("answering")
        # 1. The worker dies while grading: its messages stay unacknowledged.
        await until(lambda: _has(cluster, "pending"), UNIT_S)
        await cluster.kill_worker()
        step("worker killed")
        held = (await cluster.redis_group())["pending"]
        # 2. With no worker, jobs wait unread; Redis hangs, A dies while its sends
        # hang, and Redis dies and comes back empty.
        await until(lambda: _has(cluster, "unread"), UNIT_S)
        unread = (await cluster.redis_group())["unread"]
        cluster.redis.freeze()
        frozen_at = time.monotonic()
        step("redis frozen")
        await until(lambda: acks("a", after=frozen_at) >= 1, 2 * UNIT_S)
        await cluster.kill("a")
        step("a killed")
        stranded = acks("a", after=frozen_at)
        await asyncio.to_thread(cluster.redis.stop)
        await asyncio.to_thread(cluster.redis.start)
        step("redis restarted")
        # 3. A and the worker come back; the worker dies again while grading, and
        # B with it.
        await asyncio.gather(cluster.start("a"), cluster.start_worker())
        step("a, worker started")
        await until(lambda: _has(cluster, "pending"), 3 * UNIT_S)
        await asyncio.gather(cluster.kill_worker(), cluster.kill("b"))
        step("worker, b killed")
        await asyncio.gather(cluster.start_worker(), cluster.start("b"))
        step("worker, b started")
        faults_ended = time.monotonic()

        async with asyncio.timeout(RECOVERY_S):
            await taking
            while set(await grading_state(storage, interview)) != {"evaluated"}:
                await asyncio.sleep(0.2)
        recovered_s = time.monotonic() - faults_ended
    finally:
        taking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taking

    print(
        f"faults over {faults_ended - began:.1f} s; {acks()} answers acknowledged; "
        f"stranded: {held} messages held by the killed worker, {unread} unread in "
        f"the lost stream, {stranded} sends of the killed instance; all graded "
        f"and summarised {recovered_s:.1f} s after the last fault; {steps}"
    )
    assert held >= 1 and unread >= 1 and stranded >= 1  # each fault stranded jobs
    assert recovered_s < RECOVERY_S
    state = await grading_state(storage, interview)
    assert len(state) == CANDIDATES * (QUESTIONS + 1)  # every answer, every attempt
    stored = await stored_answers(storage, interview)
    for taker in takers:  # no acknowledged answer lost
        assert {(ack.index, ack.text) for ack in taker.acks} <= stored[taker.name]


async def stored_answers(
    storage: DatabaseStorage, interview: InterviewId
) -> dict[str, set[tuple[int, str]]]:
    rows = await storage.database.fetch_all(
        sa.select(sessions.c.candidate_id, answers.c.question_index, answers.c.text)
        .select_from(answers.join(sessions, sessions.c.id == answers.c.session_id))
        .where(sessions.c.interview_id == interview)
    )
    stored: dict[str, set[tuple[int, str]]] = {}
    for row in rows:
        stored.setdefault(row[0], set()).add((row[1], row[2]))
    return stored


async def _has(cluster: Cluster, what: str) -> bool:
    return (await cluster.redis_group())[what] >= 1
