"""Grading tasks through Redis streams (server/grading/) to real worker loops."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from starlette.datastructures import Secret

from evaluators.grade import Grade
from protocol.definition import InterviewDefinition, QuestionDef
from protocol.ids import SessionId, UserId
from server.__main__ import main
from server.cluster.bus import InProcessBus
from server.grading.queue import (
    IDLE_TIMEOUT_MS,
    JOBS_PER_MESSAGE,
    GradingQueue,
    make_queue,
)
from server.grading.service import GradingService
from server.grading.worker import install_worker, run_worker, wall_clock
from server.settings import Settings
from server.storage.attempts import DatabaseStorage
from server.storage.results import ResultsStore
from tests.conftest import RedisServer, free_port
from tests.e2e._client import TIME_FACTOR, UNIT_S
from tests.integration._grading import FakeClock, FakeGrader, Harness

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IDLE_MS = 300
"""The reclaiming worker takes over a task left unacknowledged this long."""


class GatedGrader(FakeGrader):
    """Grades only once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        self.started.set()
        await self.release.wait()
        return await super().grade(question, answer)


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        jwt_secret=Secret("worker-test-secret-long-enough-for-hs256"),
    )


@pytest.fixture
async def harness(storage: DatabaseStorage, definition: InterviewDefinition) -> Harness:
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=1
    )
    return Harness(storage, interview)


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[GradingQueue]:
    queue = make_queue(settings)
    await queue.broker.startup()
    yield queue
    await queue.broker.shutdown()
    async with Redis.from_url(settings.redis_url or "") as redis:
        keys = [key async for key in redis.scan_iter(f"*{settings.redis_prefix}*")]
        if keys:
            await redis.delete(*keys)


@contextlib.asynccontextmanager
async def worker(
    settings: Settings, grader: FakeGrader, *, idle_timeout_ms: int = IDLE_MS
) -> AsyncIterator[None]:
    queue = make_queue(settings, idle_timeout_ms=idle_timeout_ms)
    install_worker(queue, settings, grader=grader)
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_worker(queue, stop, concurrency=settings.grading_concurrency)
    )
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(UNIT_S):
            await running


async def unacknowledged(settings: Settings) -> int:
    prefix = settings.redis_prefix
    async with Redis.from_url(settings.redis_url or "") as redis:
        info = await redis.xpending(f"{prefix}grading", f"{prefix}graders")
    return int(info["pending"])


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(UNIT_S):
        while not await check():
            await asyncio.sleep(0.02)


async def graded(harness: Harness, session_id: SessionId, index: int) -> bool:
    answer = (await harness.detail(session_id)).answers[index]
    return answer.evaluation_status == "evaluated"


async def test_a_task_is_acknowledged_only_after_the_worker_finished_it(
    settings: Settings, harness: Harness, sender: GradingQueue
) -> None:
    attempt = await harness.start()
    await harness.answer(attempt, "b", enqueue=False)
    grader = GatedGrader()
    assert await sender.ready()  # /readyz's broker check

    async with worker(settings, grader):
        await sender.grade(attempt.session_id, 0)
        async with asyncio.timeout(UNIT_S):
            await grader.started.wait()
        assert await unacknowledged(settings) == 1

        grader.release.set()
        await eventually(lambda: graded(harness, attempt.session_id, 0))

        async def acknowledged() -> bool:
            return await unacknowledged(settings) == 0

        await eventually(acknowledged)
    assert (await harness.detail(attempt.session_id)).answers[0].score == 2


async def test_a_task_whose_worker_was_killed_is_delivered_to_another(
    settings: Settings, harness: Harness, sender: GradingQueue
) -> None:
    attempt = await harness.start()
    attempt = await harness.answer(attempt, "b", enqueue=False)
    await harness.answer(attempt, "atomicity", enqueue=False)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "REDIS_PREFIX": settings.redis_prefix,
        "JWT_SECRET": str(settings.jwt_secret),
    }
    command = [sys.executable, "-m", "tests.integration._stuck_worker"]
    stuck = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)
    try:
        await sender.grade(attempt.session_id, 0)

        async def taken() -> bool:
            return await unacknowledged(settings) == 1

        async with asyncio.timeout(3 * UNIT_S):  # the child imports everything first
            while not await taken():
                await asyncio.sleep(0.05)
    finally:
        stuck.kill()
        await stuck.wait()

    async with worker(settings, FakeGrader()):
        await asyncio.sleep(IDLE_MS / 1000)
        # taskiq-redis reclaims only after a new message arrives: serve's periodic
        # re-enqueue keeps them coming; here the next answer's task does.
        await sender.grade(attempt.session_id, 1)
        await eventually(lambda: graded(harness, attempt.session_id, 1))
        await eventually(lambda: graded(harness, attempt.session_id, 0))


def test_the_worker_command_explains_that_serve_grades_without_redis(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET", "worker-test-secret-long-enough-for-hs256")
    monkeypatch.delenv("REDIS_URL", raising=False)

    assert main(["worker"]) == 2
    assert "grading runs inside `interview-server serve`" in capsys.readouterr().err


async def test_the_worker_command_grades_offline_and_stops_on_sigterm(
    settings: Settings, harness: Harness, sender: GradingQueue, tmp_path: Path
) -> None:
    attempt = await harness.start()
    await harness.answer(attempt, "b", enqueue=False)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "REDIS_PREFIX": settings.redis_prefix,
        "JWT_SECRET": str(settings.jwt_secret),
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "worker",
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
    try:
        await sender.grade(attempt.session_id, 0)
        async with asyncio.timeout(3 * UNIT_S):  # the child imports everything first
            while not await graded(harness, attempt.session_id, 0):
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(UNIT_S):
            assert await process.wait() == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    answer = (await harness.detail(attempt.session_id)).answers[0]
    assert (answer.score, answer.model) == (2, "rule:mcq")


async def stream_length(settings: Settings) -> int:
    async with Redis.from_url(settings.redis_url or "") as redis:
        return int(await redis.xlen(f"{settings.redis_prefix}grading"))


async def test_jobs_sent_together_share_a_message_and_are_all_graded(
    settings: Settings, harness: Harness, sender: GradingQueue
) -> None:
    sessions = [await harness.complete(enqueue=False) for _ in range(4)]
    keys = [(session_id, index) for session_id in sessions for index in range(3)]

    await asyncio.gather(*(sender.grade(*key) for key in keys))
    # Sent before the first message left: they travel together, ten to a message.
    assert await stream_length(settings) == math.ceil(len(keys) / JOBS_PER_MESSAGE)

    async with worker(settings, FakeGrader()):

        async def evaluated() -> bool:
            details = [await harness.detail(session_id) for session_id in sessions]
            return all(d.session.status == "evaluated" for d in details)

        await eventually(evaluated)

        async def acknowledged() -> bool:
            return await unacknowledged(settings) == 0

        await eventually(acknowledged)


# -- leases and Redis failures (server/grading/lease.py, broker.py) -------------------

LEASE_S = 1.0 * TIME_FACTOR
"""A short lease, so that these tests outlast a few of them."""


@pytest.fixture
def leased(settings: Settings) -> Settings:
    return dataclasses.replace(settings, grading_lease_s=LEASE_S)


@pytest.fixture
async def live(storage: DatabaseStorage, definition: InterviewDefinition) -> Harness:
    """A harness on the wall clock, the clock of the worker processes' leases."""
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=1
    )
    return Harness(storage, interview, clock=FakeClock(wall_clock() - 10_000))


def requeuer(harness: Harness, queue: GradingQueue) -> GradingService:
    """What ``serve`` runs every 5 s, here on demand, with the short lease."""
    results = ResultsStore(harness.storage.database)
    lease_ms = round(LEASE_S * 1000)
    return GradingService(
        results, FakeGrader(), InProcessBus(), wall_clock, queue, lease_ms=lease_ms
    )


async def test_a_job_whose_worker_was_killed_is_sent_again_once_its_lease_ran_out(
    leased: Settings, live: Harness, sender: GradingQueue
) -> None:
    attempt = await live.start()
    await live.answer(attempt, "b", enqueue=False)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": leased.database_url,
        "REDIS_URL": leased.redis_url or "",
        "REDIS_PREFIX": leased.redis_prefix,
        "JWT_SECRET": str(leased.jwt_secret),
        "GRADING_LEASE_S": str(LEASE_S),
    }
    command = [sys.executable, "-m", "tests.integration._stuck_worker"]
    stuck = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)
    try:
        await sender.grade(attempt.session_id, 0)

        async def taken() -> bool:
            return await unacknowledged(leased) == 1

        async with asyncio.timeout(3 * UNIT_S):  # the child imports everything first
            while not await taken():
                await asyncio.sleep(0.05)
        service = requeuer(live, sender)
        # While its worker lives, the job keeps its lease: never sent again.
        deadline = time.monotonic() + 2 * LEASE_S
        while time.monotonic() < deadline:
            assert await service.requeue_pending() == 0
            await asyncio.sleep(LEASE_S / 10)
    finally:
        stuck.kill()
        await stuck.wait()
    killed_at = time.monotonic()

    # Redis would give the dead worker's message to another after 10 minutes; the
    # lease runs out long before, and the re-enqueue sends the job again.
    async with worker(leased, FakeGrader(), idle_timeout_ms=IDLE_TIMEOUT_MS):
        async with asyncio.timeout(LEASE_S + UNIT_S):
            while not await graded(live, attempt.session_id, 0):
                await service.requeue_pending()
                await asyncio.sleep(LEASE_S / 10)
    assert time.monotonic() - killed_at < LEASE_S + UNIT_S
    assert await unacknowledged(leased) == 1  # the dead worker's copy, left to Redis


async def test_a_slow_job_keeps_its_lease_in_its_worker_and_runs_once(
    leased: Settings, live: Harness, sender: GradingQueue
) -> None:
    attempt = await live.start()
    await live.answer(attempt, "b", enqueue=False)
    grader = GatedGrader()
    service = requeuer(live, sender)

    async with worker(leased, grader, idle_timeout_ms=IDLE_TIMEOUT_MS):
        await sender.grade(attempt.session_id, 0)
        async with asyncio.timeout(UNIT_S):
            await grader.started.wait()
        deadline = time.monotonic() + 3 * LEASE_S  # three leases, renewed meanwhile
        while time.monotonic() < deadline:
            assert await service.requeue_pending() == 0
            await asyncio.sleep(LEASE_S / 10)
        grader.release.set()
        await eventually(lambda: graded(live, attempt.session_id, 0))

    assert len(grader.graded) == 1


async def test_a_worker_keeps_grading_after_redis_restarted_empty(
    settings: Settings, harness: Harness
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH")
    redis = RedisServer(free_port())
    await asyncio.to_thread(redis.start)
    private = dataclasses.replace(settings, redis_url=redis.url)
    sending = make_queue(private)
    await sending.broker.startup()
    try:
        first = await harness.start()
        await harness.answer(first, "b", enqueue=False)
        second = await harness.start()
        await harness.answer(second, "b", enqueue=False)
        async with worker(private, FakeGrader()):
            await sending.grade(first.session_id, 0)
            await eventually(lambda: graded(harness, first.session_id, 0))

            await asyncio.to_thread(redis.stop)  # SIGKILL: the stream and group go
            await asyncio.to_thread(redis.start)
            await sending.grade(second.session_id, 0)  # sent at the first try
            await eventually(lambda: graded(harness, second.session_id, 0))
    finally:
        await sending.broker.shutdown()
        await asyncio.to_thread(redis.stop)
