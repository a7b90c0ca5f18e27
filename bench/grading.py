"""``python -m bench.grading``: answers graded per second, end to end.

Answers are stored in a fresh, migrated PostgreSQL database as completed attempts,
enqueued as the server enqueues them (:meth:`GradingService.answers_recorded`, through
a ``RedisStreamBroker`` on a fresh key prefix), graded by N ``interview-server worker``
processes against an OpenAI-compatible stub (``bench.grading_stub``, its own process)
that answers after ``--latency-ms``, and counted in the database. The figure is
answers / (last ``evaluated_at`` - first enqueue). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from bench.server import REPO, BenchError, clk_tck
from bench.stats import (
    parse_proc_stat_busy as parse_proc_stat_busy,  # re-exported (tests)
    summarize,
)
from bench.storage import admin as _admin, delete_keys as _delete_keys
from evaluators.grade import EvaluationStatus
from protocol.attempt import begin, change_between, submit
from protocol.definition import parse_definition
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.cluster.bus import InProcessBus
from server.grading.queue import GradingQueue, make_queue
from server.grading.service import CONCURRENCY, GradingService
from server.grading.worker import (
    REQUEUE_INTERVAL_S,
    grader_from_settings,
    wall_clock,
)
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.database import Database
from server.storage.migrations import migrate
from server.storage.results import ResultsStore
from server.storage.tables import answers, sessions

KINDS = ("mcq", "short_answer", "code")
PENDING = EvaluationStatus.PENDING.value
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STUB_MODEL = "openai/stub-model"
STUB_KEY = "sk-bench-stub-not-a-real-key"
JWT_SECRET_BYTES = 32
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.05
SUMMARY_TIMEOUT_S = 60.0
UNSTICK_S = 15.0
SETUP_CONCURRENCY = 8
ENQUEUE_CONCURRENCY = 16
EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
CODE_ANSWER = "def add(a, b):\n    return a + b\n"
SHORT_ANSWER = "Atomicity and isolation keep concurrent transactions correct."

# -- pure helpers (tests/unit/test_bench_grading.py) ----------------------------------


def question(kind: str, number: int) -> dict[str, Any]:
    """Question ``number`` of an interview of ``kind`` questions (limits of an hour:
    nothing expires while the bench stores the attempts)."""
    common = {"text": f"Question {number}", "points": 10, "time_limit_s": 3600}
    if kind == "mcq":
        options = [{"id": "a", "text": "4"}, {"id": "b", "text": "7"}]
        return {"type": "mcq", **common, "options": options, "correct_answer": "b"}
    if kind == "short_answer":
        keywords = ["atomicity", "isolation"]
        return {"type": "short_answer", **common, "expected_keywords": keywords}
    if kind == "code":
        cases = [{"args": [1, 2], "expected": 3}, {"args": [2, 5], "expected": 7}]
        return {
            "type": "code",
            **common,
            "evaluation_criteria": ["correctness", "readability"],
            "tests": {"entrypoint": "add", "cases": cases},
        }
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def definition(kind: str, questions: int, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": "python -m bench.grading",
        "settings": {"max_attempts": 1, "grace_s": 1},
        "questions": [question(kind, number) for number in range(questions)],
    }


def answer_text(kind: str) -> str:
    """A correct answer of ``kind`` (MCQ right, keywords present, code passing)."""
    return {"mcq": "b", "short_answer": SHORT_ANSWER, "code": CODE_ANSWER}[kind]


def attempts_for(answers: int, questions: int) -> int:
    """Attempts of ``questions`` answers each that hold at least ``answers``."""
    if answers < 0 or questions < 1:
        raise ValueError(
            f"need answers >= 0 and questions >= 1, got {answers}, {questions}"
        )
    return math.ceil(answers / questions)


def worker_environment(
    base: dict[str, str],
    *,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    jwt_secret: str,
    api_base: str,
    extra: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The environment of one ``interview-server worker``: models on the stub, the
    stub's key as ``OPENAI_API_KEY`` (litellm's openai provider reads it; the server
    passes no key of its own), litellm offline, and ``extra`` last."""
    env = {
        key: value
        for key, value in base.items()
        if not key.startswith(("MODEL_", "DATABASE_", "REDIS_"))
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        JWT_SECRET=jwt_secret,
        MODEL_SHORT_ANSWER=STUB_MODEL,
        MODEL_CODE=STUB_MODEL,
        MODEL_API_BASE=api_base,
        OPENAI_API_KEY=STUB_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``--worker-env``)."""
    key, separator, value = text.partition("=")
    if not separator or not key or not key.replace("_", "").isalnum():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def rate(count: int, start_ms: int, end_ms: int) -> float | None:
    """``count`` per second over ``start_ms..end_ms`` (``None`` for an empty span)."""
    span = end_ms - start_ms
    return count / span * 1000 if span > 0 else None


def parse_stat_children_cpu(stat: str) -> int:
    """cutime + cstime (clock ticks: the waited-for children, e.g. the sandbox) from
    the text of /proc/<pid>/stat: fields 16 and 17 of the whole line."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[13]) + int(fields[14])


# -- processes ------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> tuple[int, int]:
    """(own, waited-for children) CPU ticks of ``pid``; (0, 0) once it is gone."""
    from bench.stats import parse_stat_cpu

    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0, 0
    return parse_stat_cpu(text), parse_stat_children_cpu(text)


def _machine_busy() -> tuple[int, int]:
    return parse_proc_stat_busy(Path("/proc/stat").read_text())


def _rss_mb(pid: int) -> float | None:
    from bench.stats import parse_status_rss_kb

    try:
        return parse_status_rss_kb(Path(f"/proc/{pid}/status").read_text()) / 1024
    except (OSError, ValueError):
        return None


@dataclass
class Child:
    """A subprocess of the bench; :meth:`stop` always ends it."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with {code}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as text:
            return b"".join(text.readlines()[-lines:]).decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after ``STOP_TIMEOUT_S`` (stream workers sometimes hang
        on SIGTERM: STACK-NOTES); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.log.close()
        return self.process.returncode


def start_child(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Child:
    log = open(logs / f"{name}.log", "wb")  # closed by Child.stop
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return Child(name, process, log)


def start_stub(latency_ms: float, logs: Path) -> tuple[Child, int]:
    """The stub model on a free port; its port once it listens."""
    argv = [sys.executable, "-m", "bench.grading_stub", "--latency-ms", str(latency_ms)]
    child = start_child("stub", argv, dict(os.environ), logs)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        child.check()
        for line in child.tail(5).splitlines():
            if line.startswith("port "):
                return child, int(line.split()[1])
        time.sleep(0.05)
    child.stop()
    raise BenchError("the stub model did not start")


# -- the run --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    answers: int = 2000
    kind: str = "mcq"
    latency_ms: float = 0.0
    workers: int = 1
    questions: int = 10
    warmup: int | None = None
    timeout_s: float = 300.0
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    worker_env: tuple[tuple[str, str], ...] = ()
    keep_logs: bool = False
    profile_dir: Path | None = None

    @property
    def warmup_answers(self) -> int:
        """Default: two attempts per worker (the first grades import litellm)."""
        return (
            self.warmup
            if self.warmup is not None
            else 2 * self.questions * self.workers
        )


@dataclass
class Cpu:
    """CPU readings at the start and the end of the measured phase."""

    pids: dict[str, int]
    before: dict[str, tuple[int, int]] = field(default_factory=dict)
    after: dict[str, tuple[int, int]] = field(default_factory=dict)
    machine_before: tuple[int, int] = (0, 0)
    machine_after: tuple[int, int] = (0, 0)

    def read(self) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
        return {
            name: _cpu_ticks(pid) for name, pid in self.pids.items()
        }, _machine_busy()

    def start(self) -> None:
        self.before, self.machine_before = self.read()

    def stop(self) -> None:
        self.after, self.machine_after = self.read()

    def seconds(self, name: str) -> tuple[float, float]:
        """(own, children) CPU seconds of ``name`` in the phase."""
        own = self.after[name][0] - self.before[name][0]
        children = self.after[name][1] - self.before[name][1]
        return own / clk_tck(), children / clk_tck()

    def machine_percent(self) -> float:
        busy = self.machine_after[0] - self.machine_before[0]
        total = self.machine_after[1] - self.machine_before[1]
        return 100 * busy / total * (os.cpu_count() or 1) if total else 0.0


class Bench:
    """One run; :meth:`run` returns the report, and always cleans up after itself."""

    def __init__(self, options: Options, out: IO[str]) -> None:
        self.options = options
        self.out = out
        token = secrets.token_hex(4)
        self.database = f"bench_grading_{token}"
        self.prefix = f"bench-grading-{token}:"
        self.database_url = (
            sa.make_url(options.database_url)
            .set(database=self.database)
            .render_as_string(hide_password=False)
        )
        self.jwt_secret = secrets.token_urlsafe(JWT_SECRET_BYTES)
        self.children: list[Child] = []
        self.logs = Path(tempfile.mkdtemp(prefix="bench-grading-"))

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> dict[str, Any]:
        created = False
        try:
            asyncio.run(
                _admin(self.options.database_url, f'CREATE DATABASE "{self.database}"')
            )
            created = True
            return asyncio.run(self._run())
        finally:
            for child in self.children:
                status = child.stop()
                if status not in (0, -signal.SIGTERM, None):
                    self.say(f"note: {child.name} exited with {status}")
            with contextlib.suppress(Exception):
                asyncio.run(_delete_keys(self.options.redis_url, self.prefix))
            if created:
                drop = f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
                asyncio.run(_admin(self.options.database_url, drop))
            if not self.options.keep_logs:
                for log in self.logs.iterdir():
                    log.unlink()
                self.logs.rmdir()
            else:
                self.say(f"logs kept in {self.logs}")

    async def _run(self) -> dict[str, Any]:
        options = self.options
        await migrate(self.database_url)
        settings = Settings(
            database_url=self.database_url,
            redis_url=options.redis_url,
            redis_prefix=self.prefix,
        )
        storage = DatabaseStorage(
            Database(self.database_url, pool_max=SETUP_CONCURRENCY * 2)
        )
        await storage.connect()
        queue = make_queue(settings)
        await queue.broker.startup()
        try:
            return await self._measure(storage, queue, settings)
        finally:
            await queue.broker.shutdown()
            await storage.disconnect()

    async def _measure(
        self, storage: DatabaseStorage, queue: GradingQueue, settings: Settings
    ) -> dict[str, Any]:
        options = self.options
        service = GradingService(
            ResultsStore(storage.database),
            grader_from_settings(settings),  # offline: the bench never grades
            InProcessBus(),
            wall_clock,
            queue,
        )
        self.say(f"database {self.database}, redis prefix {self.prefix}")
        warm = await _attempts(
            storage, options.kind, options.questions, options.warmup_answers, "warmup"
        )
        self.say(f"stored {len(warm.sessions) * options.questions} warm-up answers")

        stub, port = start_stub(options.latency_ms, self.logs)
        self.children.append(stub)
        env = worker_environment(
            dict(os.environ),
            database_url=self.database_url,
            redis_url=options.redis_url,
            redis_prefix=self.prefix,
            jwt_secret=self.jwt_secret,
            api_base=f"http://127.0.0.1:{port}/v1",
            extra=options.worker_env,
        )
        baseline = await _blocked_readers(options.redis_url)
        workers = [
            start_child(
                f"worker{n}", worker_argv(options.profile_dir, n), env, self.logs
            )
            for n in range(options.workers)
        ]
        self.children.extend(workers)
        await self._wait_listening(workers, baseline)
        # As serve does: failed tries are retried from the database, not the broker.
        requeue = asyncio.create_task(_requeue_forever(service))
        try:
            return await self._graded(storage, service, warm, workers, stub)
        finally:
            requeue.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await requeue

    async def _graded(
        self,
        storage: DatabaseStorage,
        service: GradingService,
        warm: Stored,
        workers: list[Child],
        stub: Child,
    ) -> dict[str, Any]:
        options = self.options

        if warm.sessions:
            self.say(f"warm-up: {len(warm.sessions) * options.questions} answers")
            await _enqueue(service, warm.sessions, options.questions)
            await self._wait_graded(
                storage,
                warm.interview,
                len(warm.sessions) * options.questions,
                workers,
                START_TIMEOUT_S * 2,
                unstick=service,
            )
        rss_warm = {child.name: _rss_mb(child.pid) for child in workers}
        # Stored only now: the periodic re-enqueue would send them during the warm-up.
        started = time.monotonic()
        main = await _attempts(
            storage, options.kind, options.questions, options.answers, "main"
        )
        setup_s = time.monotonic() - started
        answers_total = len(main.sessions) * options.questions
        self.say(
            f"stored {answers_total} answers in {len(main.sessions)} attempts "
            f"in {setup_s:.1f} s"
        )

        loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
        cpu = Cpu(
            {**{w.name: w.pid for w in workers}, "stub": stub.pid, "bench": os.getpid()}
        )
        cpu.start()
        first_enqueue = wall_clock()
        self.say(
            f"measuring: {answers_total} {options.kind} answers, "
            f"{options.workers} worker(s), stub latency {options.latency_ms:g} ms"
        )
        sent_at = await _enqueue(service, main.sessions, options.questions)
        enqueued_ms = wall_clock() - first_enqueue
        missing = await _count(
            storage,
            main.interview,
            answers.c.enqueued_at.is_(None) & (answers.c.evaluation_status == PENDING),
        )
        if missing:
            raise BenchError(f"{missing} answers were not enqueued (see the warnings)")
        await self._wait_graded(
            storage, main.interview, answers_total, workers, options.timeout_s
        )
        cpu.stop()
        wall_s = (wall_clock() - first_enqueue) / 1000
        loadavg_after = Path("/proc/loadavg").read_text().split()[:3]

        rows = await storage.database.fetch_all(
            sa.select(
                answers.c.session_id,
                answers.c.grading_attempts,
                answers.c.evaluated_at,
                answers.c.evaluation_status,
            )
            .select_from(answers.join(sessions, sessions.c.id == answers.c.session_id))
            .where(sessions.c.interview_id == main.interview)
        )
        last_ms = max(int(row["evaluated_at"]) for row in rows)
        # From the send, not from enqueued_at: that is the job's lease, renewed
        # when a job that waited for a worker is taken (server/grading/lease.py).
        latencies = [
            float(row["evaluated_at"] - sent_at[row["session_id"]]) for row in rows
        ]
        statuses: dict[str, int] = {}
        for row in rows:
            statuses[row["evaluation_status"]] = (
                statuses.get(row["evaluation_status"], 0) + 1
            )
        summaries_ms = await self._wait_summaries(
            storage, main.interview, len(main.sessions), first_enqueue
        )

        worker_cpu = {w.name: cpu.seconds(w.name) for w in workers}
        own_s = sum(own for own, _ in worker_cpu.values())
        children_s = sum(children for _, children in worker_cpu.values())
        graded_per_s = rate(answers_total, first_enqueue, last_ms)
        report: dict[str, Any] = {
            "options": {**asdict(options), "worker_env": dict(options.worker_env)},
            "answers": answers_total,
            "attempts": len(main.sessions),
            "statuses": statuses,
            "retried": sum(row["grading_attempts"] > 1 for row in rows),
            "graded_per_s": graded_per_s,
            "graded_in_s": (last_ms - first_enqueue) / 1000,
            "enqueue_s": enqueued_ms / 1000,
            "enqueue_per_s": rate(answers_total, 0, enqueued_ms),
            "summaries_done_s": None if summaries_ms is None else summaries_ms / 1000,
            "latency_ms": summarize(latencies).as_dict(),
            "worker_concurrency_max": CONCURRENCY,
            "cpu": {
                "window_s": wall_s,
                "workers_s": {name: own for name, (own, _) in worker_cpu.items()},
                "workers_children_s": children_s,
                "worker_ms_per_answer": 1000 * (own_s + children_s) / answers_total,
                "workers_percent": 100 * (own_s + children_s) / wall_s,
                "stub_percent": 100 * sum(cpu.seconds("stub")) / wall_s,
                "bench_percent": 100 * sum(cpu.seconds("bench")) / wall_s,
                "machine_percent": cpu.machine_percent(),
                "cores": os.cpu_count(),
                "loadavg_before": loadavg_before,
                "loadavg_after": loadavg_after,
            },
            "worker_rss_mb_after_warmup": rss_warm,
            "setup_s": setup_s,
        }
        return report

    async def _wait_listening(self, workers: list[Child], baseline: int) -> None:
        """Until every worker blocks reading the stream (Redis lists a consumer only
        once it got a message, so the blocked XREADGROUP clients are counted)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for worker in workers:
                worker.check()
            if await _blocked_readers(self.options.redis_url) >= baseline + len(
                workers
            ):
                return
            await asyncio.sleep(0.1)
        raise BenchError(f"the workers did not start within {START_TIMEOUT_S:g} s")

    async def _wait_graded(
        self,
        storage: DatabaseStorage,
        interview: InterviewId,
        expected: int,
        workers: list[Child],
        timeout_s: float,
        *,
        unstick: GradingService | None = None,
    ) -> None:
        """Until ``expected`` answers of ``interview`` are graded. With ``unstick``,
        jobs that made no progress for ``UNSTICK_S`` are sent again (a task that failed
        outside the grader is otherwise re-sent only once its lease ran out)."""
        deadline = time.monotonic() + timeout_s
        next_line = time.monotonic() + 1
        graded, progress_at = 0, time.monotonic()
        while time.monotonic() < deadline:
            count = await _count(
                storage, interview, answers.c.evaluation_status != PENDING
            )
            if count >= expected:
                return
            if count > graded:
                graded, progress_at = count, time.monotonic()
            elif unstick and time.monotonic() - progress_at > UNSTICK_S:
                sent = await unstick.requeue_pending(take_over=True)
                self.say(f"  warm-up stuck: sent {sent} jobs again")
                progress_at = time.monotonic()
            for worker in workers:
                worker.check()
            if time.monotonic() >= next_line:
                self.say(f"  {graded}/{expected} graded")
                next_line += 1
            await asyncio.sleep(POLL_S)
        raise BenchError(
            f"only {graded} of {expected} answers graded in {timeout_s:g} s"
        )

    async def _wait_summaries(
        self,
        storage: DatabaseStorage,
        interview: InterviewId,
        expected: int,
        since: Millis,
    ) -> int | None:
        """Milliseconds from ``since`` to the last summary, or ``None`` (timed out)."""
        query = sa.select(sa.func.count(), sa.func.max(sessions.c.evaluated_at)).where(
            sessions.c.interview_id == interview, sessions.c.summary.is_not(None)
        )
        deadline = time.monotonic() + SUMMARY_TIMEOUT_S
        while time.monotonic() < deadline:
            row = await storage.database.fetch_one(query)
            assert row is not None
            if row[0] >= expected:
                return int(row[1]) - since
            await asyncio.sleep(POLL_S)
        return None


@dataclass
class Stored:
    interview: InterviewId
    sessions: list[SessionId]


async def _attempts(
    storage: DatabaseStorage, kind: str, questions: int, count: int, label: str
) -> Stored:
    """An interview and ``ceil(count / questions)`` completed attempts of it, every
    question answered, nothing enqueued yet (as a connection leaves them)."""
    record = await storage.create_interview(
        org="bench",
        created_by=UserId("bench"),
        definition=parse_definition(definition(kind, questions, f"bench {label}")),
        now=wall_clock(),
    )
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)
    text = answer_text(kind)

    async def one(number: int) -> SessionId:
        async with slots:
            return await _complete(storage, record, f"{label}-{number}", text)

    made = await asyncio.gather(
        *(one(number) for number in range(attempts_for(count, questions)))
    )
    return Stored(record.id, list(made))


async def _complete(
    storage: DatabaseStorage, record: InterviewRecord, candidate: str, text: str
) -> SessionId:
    now = wall_clock()
    first = begin(
        session_id=SessionId(secrets.token_hex(16)),
        interview_id=record.id,
        title=record.title,
        candidate_id=UserId(candidate),
        number=1,
        questions=record.questions,
        grace_ms=record.settings.grace_ms,
        now=now,
    )
    await storage.create_attempt(first, candidate_name=candidate, audit=[])
    attempt = first
    for index in range(len(record.questions)):
        attempt = submit(attempt, index, text, now + index + 1).attempt
    await storage.commit(change_between(first, attempt), fence=None, audit=[])
    return first.session_id


async def _enqueue(
    service: GradingService, session_ids: Sequence[SessionId], questions: int
) -> dict[str, int]:
    """Send every attempt's jobs; when each attempt's were sent (wall clock ms)."""
    slots = asyncio.Semaphore(ENQUEUE_CONCURRENCY)
    indexes = list(range(questions))
    sent_at: dict[str, int] = {}

    async def one(session_id: SessionId) -> None:
        async with slots:
            sent_at[session_id] = wall_clock()
            await service.answers_recorded(session_id, indexes)

    await asyncio.gather(*(one(session_id) for session_id in session_ids))
    return sent_at


async def _count(
    storage: DatabaseStorage, interview: InterviewId, condition: sa.ColumnElement[bool]
) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(answers.join(sessions, sessions.c.id == answers.c.session_id))
        .where(sessions.c.interview_id == interview, condition)
    )
    return int(await storage.database.fetch_val(query))


async def _requeue_forever(service: GradingService) -> None:
    while True:
        await asyncio.sleep(REQUEUE_INTERVAL_S)
        try:
            await service.requeue_pending()
        except Exception as exc:  # the next round tries again
            print(f"note: re-enqueue failed: {exc!r}", file=sys.stderr)


async def _blocked_readers(url: str) -> int:
    """Clients of this Redis whose last command is XREADGROUP (workers waiting)."""
    from redis.asyncio import Redis

    async with Redis.from_url(url) as redis:
        clients = await redis.client_list()
    return sum(client.get("cmd") == "xreadgroup" for client in clients)


PROFILED_WORKER = """\
import cProfile, runpy, sys, time
import litellm  # before the profile: imported at the first grade, it blocks the loop
profile = cProfile.Profile(time.process_time)
sys.argv = ["interview-server", "worker"]
profile.enable()
try:
    runpy.run_module("server", run_name="__main__")
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(sys.orig_argv[-1])
"""


def worker_argv(profile_dir: Path | None, number: int) -> list[str]:
    """``interview-server worker``; with ``profile_dir``, under cProfile timed by CPU
    (not wall) time, written to ``profile_dir/workerN.prof``, with litellm imported
    beforehand (under the profiler the import stalls the loop so long that the
    first tasks' database connects time out)."""
    if profile_dir is None:
        return [sys.executable, "-m", "server", "worker"]
    output = str(profile_dir.resolve() / f"worker{number}.prof")
    return [sys.executable, "-c", PROFILED_WORKER, output]


# -- the command ----------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    options = report["options"]
    cpu = report["cpu"]
    latency = report["latency_ms"]
    workers_s = ", ".join(f"{n} {s:.1f} s" for n, s in cpu["workers_s"].items())
    loadavg = f"{' '.join(cpu['loadavg_before'])} -> {' '.join(cpu['loadavg_after'])}"
    lines = [
        f"grading bench: {report['answers']} {options['kind']} answers "
        f"({report['attempts']} attempts of {options['questions']}), "
        f"{options['workers']} worker(s) x concurrency "
        f"{report['worker_concurrency_max']}, "
        f"stub latency {options['latency_ms']:g} ms",
        f"  graded/s      {_fmt(report['graded_per_s'], '.0f')}   "
        f"(all graded {report['graded_in_s']:.2f} s after the first enqueue; "
        f"statuses {report['statuses']}, {report['retried']} retried)",
        f"  enqueue       {report['enqueue_s']:.2f} s "
        f"({_fmt(report['enqueue_per_s'], '.0f')}/s); "
        f"summaries done at {_fmt(report['summaries_done_s'], '.2f')} s",
        f"  latency ms    enqueue->evaluated p50 {_fmt(latency['p50'], '.0f')} "
        f"p99 {_fmt(latency['p99'], '.0f')} max {_fmt(latency['max'], '.0f')}",
        f"  worker cpu    {cpu['workers_percent']:.0f}% of a core in all "
        f"({workers_s}; sandbox children {cpu['workers_children_s']:.1f} s); "
        f"{cpu['worker_ms_per_answer']:.2f} ms CPU per answer",
        f"  other cpu     stub {cpu['stub_percent']:.0f}%, "
        f"bench {cpu['bench_percent']:.0f}%, machine {cpu['machine_percent']:.0f}% "
        f"of {cpu['cores']} cores x 100% (rest: PostgreSQL, Redis, anything else) "
        f"over {cpu['window_s']:.1f} s",
        f"  load average  {loadavg}",
        f"  worker rss    {report['worker_rss_mb_after_warmup']} MB after warm-up",
    ]
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grading",
        description="Answers graded per second, end to end (see bench/README.md).",
    )
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--kind", choices=KINDS, default="mcq")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--questions", type=int, default=10, help="per attempt")
    parser.add_argument(
        "--warmup", type=int, default=None, help="answers graded before measuring"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the workers (repeatable)",
    )
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the workers under cProfile, writing DIR/workerN.prof",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    return parser


def options_from(arguments: argparse.Namespace) -> Options:
    if arguments.answers < 1 or arguments.workers < 1 or arguments.questions < 1:
        raise BenchError("--answers, --workers and --questions must be at least 1")
    return Options(
        answers=arguments.answers,
        kind=arguments.kind,
        latency_ms=arguments.latency_ms,
        workers=arguments.workers,
        questions=arguments.questions,
        warmup=arguments.warmup,
        timeout_s=arguments.timeout,
        database_url=arguments.database_url,
        redis_url=arguments.redis_url,
        worker_env=tuple(parse_assignment(item) for item in arguments.worker_env),
        keep_logs=arguments.keep_logs,
        profile_dir=arguments.profile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        options = options_from(arguments)
        report = Bench(options, sys.stdout).run()
    except (BenchError, ValueError) as exc:
        print(f"bench.grading: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(format_report(report))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = sum(n for status, n in report["statuses"].items() if status != "evaluated")
    return EXIT_PROBLEMS if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
