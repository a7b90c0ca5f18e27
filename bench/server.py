"""The server under test: start it as a subprocess, create the interview, read /proc.

The bench's own servers run from a fresh temporary directory with a random JWT secret,
on a SQLite file there or on a fresh PostgreSQL database (with Redis), listen on
127.0.0.1 only, and are stopped with SIGTERM (SIGKILL after a timeout) whatever
happens; the database and the Redis keys are removed afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from bench.stats import (
    log_kind,
    log_problems,
    parse_proc_stat_busy,
    parse_stat_comm,
    parse_stat_cpu,
    parse_status_rss_kb,
)
from bench.storage import admin, database_url as bench_database_url, delete_keys
from server.auth import issue_token

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
INVITE_BATCH = 1000
BENCH_ORG = "bench"
ANSWER_TEXT = "bench answer"
LOG_KINDS_SHOWN = 5


class BenchError(Exception):
    """The bench cannot go on (the server did not start, the API refused...)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def process_cpu_ticks(pid: int) -> int:
    """utime+stime of every thread of ``pid``, in clock ticks."""
    return parse_stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def process_rss_kb(pid: int) -> int:
    return parse_status_rss_kb(Path(f"/proc/{pid}/status").read_text())


BACKING_SERVICES = ("postgres", "redis-server")
"""Processes whose CPU the report shows next to the servers' (by command name)."""


def named_cpu_ticks(names: tuple[str, ...] = BACKING_SERVICES) -> dict[str, int]:
    """utime+stime of every process of this machine named one of ``names``, summed by
    name (a process that exits between two readings takes its ticks with it)."""
    totals = dict.fromkeys(names, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = parse_stat_comm(stat)
        if name in totals:
            totals[name] += parse_stat_cpu(stat)
    return totals


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores (/proc/stat)."""
    return parse_proc_stat_busy(Path("/proc/stat").read_text())


@dataclass
class OwnServer:
    """A server subprocess started by the bench; ``stop()`` always ends it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws/candidate"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a timeout; the exit code (None if killed)."""
        code: int | None = self.process.poll()
        if code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                code = None
        self.log.close()
        return code


@dataclass
class OwnServers:
    """The bench's own server instances and what they share: a JWT secret, a
    temporary directory (logs; the SQLite file), and in production mode a PostgreSQL
    database and a Redis key prefix of their own. ``stop()`` then ``cleanup()``
    always end and remove them all."""

    servers: list[OwnServer]
    secret: str
    directory: Path
    admin_url: str | None = None  # the PostgreSQL server the database is on
    database: str | None = None
    redis_url: str | None = None
    redis_prefix: str | None = None
    env: dict[str, str] | None = None  # the instances' environment, to restart one

    @property
    def ws_urls(self) -> list[str]:
        return [server.ws_url for server in self.servers]

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"server {index} log (end):\n{server.log_tail(lines)}"
            for index, server in enumerate(self.servers)
        )

    def log_warnings(self) -> dict[str, object]:
        """How many lines the instances logged at WARNING or above, by kind
        (:func:`bench.stats.log_kind`), the most frequent first."""
        kinds = collections.Counter(
            log_kind(line)
            for server in self.servers
            for line in log_problems(server.log_text())
        )
        return {"count": kinds.total(), "kinds": dict(kinds.most_common())}

    def stop(self) -> list[int | None]:
        """Every instance at once: SIGTERM, SIGKILL after a timeout; exit codes."""
        for server in self.servers:
            server.terminate()
        return [server.stop() for server in self.servers]

    def cleanup(self) -> None:
        """Drop the database (WITH (FORCE)), delete the prefix's Redis keys, remove
        the directory; each even if another fails."""
        try:
            if self.redis_url is not None and self.redis_prefix is not None:
                with contextlib.suppress(Exception):
                    asyncio.run(delete_keys(self.redis_url, self.redis_prefix))
            if self.admin_url is not None and self.database is not None:
                drop = f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
                try:
                    asyncio.run(admin(self.admin_url, drop))
                except Exception as exc:
                    raise BenchError(
                        f"could not drop the database {self.database} ({exc!r}): "
                        f"drop it by hand: {drop}"
                    ) from exc
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_servers(
    tick_ms: int,
    *,
    instances: int = 1,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> OwnServers:
    """Migrate a fresh database once and serve it from ``instances`` processes on
    free ports; returns once every /healthz answers.

    Without ``database_url``: a SQLite file in a temporary directory (one instance
    only). With it (a PostgreSQL server URL): a database ``bench_<random>`` created
    on that server. With ``redis_url``: ``REDIS_URL`` and a ``REDIS_PREFIX`` of
    ``bench-<random>:``, so grading jobs go to a Redis stream of their own.

    Raises:
        BenchError: the database could not be created or migrated, or a server
            exited or did not answer in time (the message holds the end of its log).
    """
    if instances > 1 and (database_url is None or redis_url is None):
        raise BenchError("several instances need a PostgreSQL database and Redis")
    directory = Path(tempfile.mkdtemp(prefix="interview-bench-"))
    token = secrets.token_hex(4)
    own = OwnServers([], secrets.token_urlsafe(48), directory)
    env = {
        **os.environ,
        "JWT_SECRET": own.secret,
        "LOG_LEVEL": "WARNING",
        "TICK_INTERVAL_MS": str(tick_ms),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("PUBLIC_URL", "REDIS_URL", "REDIS_PREFIX", "ALLOWED_ORIGINS"):
        env.pop(name, None)
    try:
        if database_url is None:
            env["DATABASE_URL"] = f"sqlite:///{directory}/bench.db"
        else:
            database = f"bench_{token}"
            asyncio.run(admin(database_url, f'CREATE DATABASE "{database}"'))
            own.admin_url, own.database = database_url, database
            env["DATABASE_URL"] = bench_database_url(database_url, database)
        if redis_url is not None:
            own.redis_url, own.redis_prefix = redis_url, f"bench-{token}:"
            env["REDIS_URL"], env["REDIS_PREFIX"] = redis_url, own.redis_prefix
        _migrate(env)
        for index in range(instances):
            own.servers.append(spawn(env, directory / f"server-{index}.log"))
        own.env = env
        for server in own.servers:
            _wait_started(server)
    except BaseException as exc:
        own.stop()
        tails = own.log_tails() if own.servers else ""
        own.cleanup()
        if isinstance(exc, BenchError):
            raise BenchError(f"{exc}\n{tails}".rstrip()) from exc
        if isinstance(exc, Exception):
            raise BenchError(f"could not start the servers: {exc!r}") from exc
        raise
    return own


def _migrate(env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=START_TIMEOUT_S,
    )
    if migrate.returncode != 0:
        output = (migrate.stdout + migrate.stderr).decode(errors="replace")
        raise BenchError(
            f"`python -m server migrate` exited with {migrate.returncode}:\n{output}"
        )


def spawn(env: dict[str, str], log_path: Path, port: int | None = None) -> OwnServer:
    """``python -m server serve`` on ``port`` (a free one by default)."""
    port = port or free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--host", HOST, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal reaches the bench only
    )
    return OwnServer(process, port, log_path, log)


def _wait_started(server: OwnServer) -> None:
    try:
        wait_healthy(server.http_url, server.process)
    except BenchError as exc:
        raise BenchError(
            f"the server on port {server.port} did not become healthy ({exc})"
        ) from exc


def wait_healthy(http_url: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BenchError(f"the server exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{http_url}/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise BenchError(f"GET {http_url}/healthz did not answer 200 in time")


QUESTION_TYPES = ("short_answer", "mcq")


def definition(
    questions: int, time_limit_s: int, kind: str = "short_answer"
) -> dict[str, Any]:
    """Questions of ``kind`` with long limits: short answers (any text is a valid
    answer), or multiple choice (any text too, graded by exact match: cheap)."""
    extra: dict[str, Any] = {}
    if kind == "mcq":
        options = [{"id": "a", "text": "Yes"}, {"id": "b", "text": "No"}]
        extra = {"options": options, "correct_answer": "a"}
    elif kind != "short_answer":
        raise ValueError(f"kind must be one of {QUESTION_TYPES}, got {kind!r}")
    return {
        "title": "Bench interview",
        "description": "Created by python -m bench.",
        "settings": {"max_attempts": 100, "grace_s": 2},
        "questions": [
            {
                "type": kind,
                "text": f"Bench question {index + 1}: describe what you did today.",
                "points": 1,
                "time_limit_s": time_limit_s,
                **extra,
            }
            for index in range(questions)
        ],
    }


def question_count(sockets: int, answers_per_s: float, measure_s: float) -> int:
    """Enough questions that the answering sockets rarely reach the last one (the
    bench never answers the last question, so that no socket completes)."""
    per_socket = answers_per_s * measure_s / max(1, sockets)
    return max(3, min(200, math.ceil(per_socket * 2) + 3))


def create_interview(
    http_url: str,
    secret: str,
    *,
    candidates: list[str],
    questions: int,
    time_limit_s: int,
    kind: str = "short_answer",
) -> str:
    """Create the bench interview (questions of ``kind``, :func:`definition`)
    through the HTTP API and invite ``candidates``.

    Raises:
        BenchError: the API refused (status and body in the message).
    """
    token = issue_token(
        secret,
        sub="bench-recruiter",
        role="recruiter",
        name="Bench Recruiter",
        org=BENCH_ORG,
        ttl_s=3600,
        now_s=time.time(),
    )
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=http_url, headers=headers, trust_env=False, timeout=120.0
    ) as client:
        response = client.post(
            "/api/interviews", json=definition(questions, time_limit_s, kind)
        )
        if response.status_code != 201:
            raise BenchError(
                f"POST /api/interviews answered {response.status_code}: "
                f"{response.text[:2000]}"
            )
        interview_id = str(response.json()["id"])
        for start in range(0, len(candidates), INVITE_BATCH):
            batch = [
                {"id": candidate, "name": f"Bench {candidate}"}
                for candidate in candidates[start : start + INVITE_BATCH]
            ]
            response = client.post(
                f"/api/interviews/{interview_id}/invitations",
                json={"candidates": batch},
            )
            if response.status_code != 201:
                raise BenchError(
                    f"POST /api/interviews/{interview_id}/invitations answered "
                    f"{response.status_code}: {response.text[:2000]}"
                )
    return interview_id
