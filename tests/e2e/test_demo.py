"""`interview-server demo` (what `make run` runs) as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.auth import issue_token, verify_token
from server.settings import DEV_JWT_SECRET
from tests.e2e._client import UNIT_S, Candidate, eventually
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


async def read_banner(process: asyncio.subprocess.Process) -> list[str]:
    """Lines printed until the Python example's last line."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(4 * UNIT_S):
        while not lines or lines[-1] != "EOF":
            lines.append((await process.stdout.readline()).decode().rstrip("\n"))
    return lines


async def test_the_demo_prints_working_tokens_and_serves_the_interview(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("JWT_SECRET", None)  # the demo keeps a random one beside its database
    env.pop("REDIS_URL", None)  # which would need a JWT_SECRET: a deployment
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "demo", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        banner = await read_banner(process)
        token = banner[banner.index(next(x for x in banner if "Candidate" in x)) + 1]
        interview_id = next(x for x in banner if "interview " in x).split()[-1]

        async def healthy() -> bool:
            async with httpx.AsyncClient() as http:
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/healthz")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

        await eventually(healthy, timeout=4 * UNIT_S)
        client = await Candidate.open(f"ws://127.0.0.1:{port}/ws/candidate")
        hello = await client.login(token)
        assert hello["user"]["id"] == "demo-candidate"
        await client.send({"type": "start", "interview_id": interview_id})
        state = await client.expect("state")
        assert state["question_count"] == 6
        assert state["interview"]["title"] == "Full Stack Developer Interview"
        await client.close()

        kept = tmp_path / "demo.db.jwt-secret"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert verify_token(kept.read_text().strip(), token).sub == "demo-candidate"
        forged = issue_token(
            DEV_JWT_SECRET, sub="demo-candidate", role="candidate", name="Mallory",
            now_s=time.time(),
        )  # fmt: skip
        mallory = await Candidate.open(f"ws://127.0.0.1:{port}/ws/candidate")
        await mallory.send({"type": "auth", "token": forged})
        frames, code = await mallory.frames_until_close()
        assert [frame.get("code") for frame in frames] == ["unauthenticated"]
        assert code == 4401
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(4 * UNIT_S):
            code = await process.wait()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)


@pytest.mark.parametrize(
    ("host", "environ"),
    [
        ("0.0.0.0", {}),
        ("::", {"JWT_SECRET": DEV_JWT_SECRET}),
        ("127.0.0.1", {"REDIS_URL": "redis://127.0.0.1:1/0"}),
    ],
)
async def test_serve_refuses_the_development_secret_beyond_loopback(
    tmp_path: Path, host: str, environ: dict[str, str]
) -> None:
    env = os.environ | {"DATABASE_URL": f"sqlite:///{tmp_path}/serve.db"}
    env.pop("JWT_SECRET", None)
    env.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--host", host,
        "--port", str(free_port()),
        env=env | environ, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(4 * UNIT_S):
            _, error = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 2
    assert "configuration error: JWT_SECRET" in error.decode()
