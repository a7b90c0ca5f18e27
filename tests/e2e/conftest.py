"""End-to-end fixtures: a real server on a free port, and interviews to take."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.datastructures import Secret

from protocol.definition import parse_definition
from protocol.ids import InterviewId, UserId
from server.app import create_app, uvicorn_config
from server.auth import issue_token
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, Invitee
from server.storage.database import Database
from tests.e2e._client import UNIT_S, Candidate

SECRET = "e2e-secret-at-least-32-bytes-long!!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def question(kind: str, limit_s: int, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": kind,
        "text": f"a {kind} question",
        "points": 5,
        "time_limit_s": limit_s,
    }
    if kind == "mcq":
        base |= {
            "options": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}],
            "correct_answer": "b",
        }
    if kind == "code":
        base |= {"sample_solution": "def f(): pass", "language": "python"}
    return base | extra


@dataclass
class Server:
    """A running server and what tests need to talk to it."""

    settings: Settings
    port: int
    storage: DatabaseStorage
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/candidate"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, sub: str, *, role: str = "candidate", ttl_s: int = 3600) -> str:
        return issue_token(
            SECRET,
            sub=sub,
            role=role,
            name=f"User {sub}",
            org="acme",
            ttl_s=ttl_s,
            now_s=time.time(),
        )

    async def interview(
        self,
        limits: list[int],
        *,
        grace_s: float = 0.0,
        max_attempts: int = 2,
        invite: tuple[str, ...] = ("alice",),
        text: str | None = None,
    ) -> InterviewId:
        """An interview of ``limits`` (seconds); ``text`` replaces every question's."""
        kinds = ["mcq", "short_answer", "code"]
        extra = {} if text is None else {"text": text}
        definition = parse_definition(
            {
                "title": "E2E interview",
                "settings": {"max_attempts": max_attempts, "grace_s": grace_s},
                "questions": [
                    question(kinds[i % 3], limit, **extra)
                    for i, limit in enumerate(limits)
                ],
            }
        )
        record = await self.storage.create_interview(
            org="acme",
            created_by=UserId("rita"),
            definition=definition,
            now=int(time.time() * 1000),
        )
        invitees = [Invitee(id=UserId(c), name=f"User {c}", email=None) for c in invite]
        await self.storage.invite(record.id, invitees, int(time.time() * 1000))
        return record.id

    async def candidate(self, sub: str = "alice", **kwargs: object) -> Candidate:
        client = await Candidate.open(self.url, **kwargs)  # type: ignore[arg-type]
        await client.login(self.token(sub))
        return client


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_secret": Secret(SECRET),
        "tick_interval_ms": 200,
        "sweep_interval_ms": 100,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


async def run_server(settings: Settings) -> AsyncIterator[Server]:
    """Serve ``settings`` on a free port in this event loop until the test ends."""
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port))
    serving = asyncio.create_task(server.serve())
    storage = DatabaseStorage(Database(settings.database_url))
    try:
        async with asyncio.timeout(UNIT_S):
            while not server.started:
                await asyncio.sleep(0.01)
        # Only once the app has connected: two SQLite connections that switch the
        # file to WAL at the same instant fail with "database is locked".
        await storage.connect()
        yield Server(settings=settings, port=port, storage=storage)
    finally:
        server.should_exit = True
        await serving
        await storage.disconnect()


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    async for running in run_server(make_settings(database_url)):
        yield running


served = contextlib.asynccontextmanager(run_server)
"""``async with served(settings) as server``: leaving the block stops the server
(gracefully, as on SIGTERM), so a test can stop it while clients are connected."""


async def assert_serves_others(server: Server, sub: str = "zoe") -> None:
    """A well-behaved candidate still logs in, starts and gets an answer accepted."""
    interview = await server.interview([60, 60], invite=(sub,))
    other = await server.candidate(sub)
    try:
        await other.send({"type": "start", "interview_id": interview})
        assert (await other.expect("state"))["question_index"] == 0
        await other.send({"type": "answer", "question_index": 0, "answer": "b"})
        assert (await other.expect("answer_ack"))["status"] == "accepted"
    finally:
        await other.close()


# -- a server in a child process, for crashes ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 3 * UNIT_S
"""How long a child server may take to import, connect and answer /healthz."""


@dataclass
class Spawned:
    """``python -m server serve`` in a child process; ``server`` talks to it."""

    server: Server
    process: asyncio.subprocess.Process
    log: Path

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, like a crashed machine."""
        self.process.kill()
        async with asyncio.timeout(UNIT_S):
            await self.process.wait()

    async def terminate(self) -> int:
        """SIGTERM: a graceful restart's first half; the exit status."""
        self.process.terminate()
        async with asyncio.timeout(3 * UNIT_S):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def spawned(
    database_url: str,
    storage: DatabaseStorage,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    nofile: int | None = None,
) -> AsyncIterator[Spawned]:
    """Run the CLI's ``serve`` on a free port; always killed on the way out.

    ``env`` adds variables; ``nofile`` lowers the child's soft ``RLIMIT_NOFILE``.
    """
    port = free_port()
    variables = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "TICK_INTERVAL_MS": "200",
        "SWEEP_INTERVAL_MS": "100",
        **(env or {}),
    }
    command = ["-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=ROOT,
            env=variables,
            stdout=output,
            stderr=output,
            preexec_fn=None if nofile is None else functools.partial(_nofile, nofile),
        )
    try:
        await _healthy(process, port, log)
        settings = make_settings(database_url)
        yield Spawned(Server(settings, port, storage), process, log)
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(UNIT_S):
            await process.wait()


def _nofile(soft: int) -> None:
    """In the child before exec: at most ``soft`` open descriptors."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _healthy(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        async with asyncio.timeout(STARTUP_S):
            while True:
                assert process.returncode is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
