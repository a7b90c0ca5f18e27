"""The server under test: start it as a subprocess, create the interview, read /proc.

The bench's own server runs from a fresh temporary directory with a SQLite database and
a random JWT secret, listens on 127.0.0.1 only, and is stopped with SIGTERM (SIGKILL
after a timeout) whatever happens.
"""

from __future__ import annotations

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

from bench.stats import parse_stat_cpu, parse_status_rss_kb
from server.auth import issue_token

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
INVITE_BATCH = 1000
BENCH_ORG = "bench"
ANSWER_TEXT = "bench answer"


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


@dataclass
class OwnServer:
    """A server subprocess started by the bench; ``stop()`` always ends it."""

    process: subprocess.Popen[bytes]
    port: int
    secret: str
    directory: Path
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
        if not self.log.closed:
            self.log.flush()
        text = (self.directory / "server.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

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

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server(tick_ms: int, *, keep_dir: bool = False) -> OwnServer:
    """Migrate a fresh database and serve it; returns once /healthz answers.

    Raises:
        BenchError: migrate failed, or the server exited or did not answer in time
            (the message holds the end of its log).
    """
    directory = Path(tempfile.mkdtemp(prefix="interview-bench-"))
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory}/bench.db",
        "JWT_SECRET": secret,
        "LOG_LEVEL": "WARNING",
        "TICK_INTERVAL_MS": str(tick_ms),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("PUBLIC_URL", "REDIS_URL", "ALLOWED_ORIGINS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "server"]
    migrate = subprocess.run(
        [*command, "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=START_TIMEOUT_S,
    )
    if migrate.returncode != 0:
        output = (migrate.stdout + migrate.stderr).decode(errors="replace")
        shutil.rmtree(directory, ignore_errors=True)
        raise BenchError(
            f"`python -m server migrate` exited with {migrate.returncode}:\n{output}"
        )
    port = free_port()
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve", "--host", HOST, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal reaches the bench only
    )
    server = OwnServer(process, port, secret, directory, log)
    try:
        wait_healthy(server.http_url, process)
    except BaseException as exc:
        server.stop()
        tail = server.log_tail()
        if not keep_dir:
            server.cleanup()
        raise BenchError(
            f"the server did not become healthy ({exc}); its log:\n{tail}"
        ) from exc
    return server


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


def definition(questions: int, time_limit_s: int) -> dict[str, Any]:
    """Short-answer questions (any text is a valid answer) with long limits."""
    return {
        "title": "Bench interview",
        "description": "Created by python -m bench.",
        "settings": {"max_attempts": 100, "grace_s": 2},
        "questions": [
            {
                "type": "short_answer",
                "text": f"Bench question {index + 1}: describe what you did today.",
                "points": 1,
                "time_limit_s": time_limit_s,
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
) -> str:
    """Create the bench interview through the HTTP API and invite ``candidates``.

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
            "/api/interviews", json=definition(questions, time_limit_s)
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
