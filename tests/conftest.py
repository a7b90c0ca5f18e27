"""Fixtures shared by the integration and end-to-end tests: a fresh, migrated database.

``database_url`` is a new database per test: a SQLite file in the test's temporary
folder by default, or, when ``DATABASE_URL`` names a PostgreSQL server, a new database
``t_<random>`` on that server, dropped afterwards. An unreachable ``DATABASE_URL`` fails
the tests rather than skipping them. The schema is migrated once per run into a
template that each test copies (a file copy, or ``CREATE DATABASE ... TEMPLATE``).

``storage`` is a connected :class:`server.storage.DatabaseStorage` on that database.

``redis_url`` is ``REDIS_URL`` when set (unreachable fails the tests), else a private
``redis-server`` started for the run on a free port (skipped when the binary is
missing, failed under ``CI``); ``redis_prefix`` is a fresh key prefix per test, so
tests sharing one Redis never see each other's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:  # imported lazily: the unit tests do not need a database stack
    from server.storage.attempts import DatabaseStorage

T = TypeVar("T")


def run(coroutine: Coroutine[object, object, T]) -> T:
    """Run ``coroutine`` to completion on a new loop in a new thread.

    Sync fixtures use it so that they never touch the event loop pytest-asyncio gives
    to the test (STACK-NOTES: session-scoped async fixtures break on function loops).
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


def _database_named(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _execute(url: str, *statements: str) -> None:
    import asyncpg

    # asyncpg does not understand SQLAlchemy's "+driver" schemes.
    connection = await asyncpg.connect(url.replace("+asyncpg", "", 1), timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _migrated_template(url: str, name: str) -> str:
    from server.storage.attempts import migrate

    await _execute(url, f'CREATE DATABASE "{name}"')
    template = _database_named(url, name)
    await migrate(template)
    return template


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database to copy: a SQLite path, or a PostgreSQL database name."""
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        from server.storage.attempts import migrate

        path = tmp_path_factory.mktemp("template") / "template.db"
        run(migrate(f"sqlite:///{path}"))
        yield str(path)
        return
    name = f"t_template_{uuid.uuid4().hex[:12]}"
    run(_migrated_template(server_url, name))
    try:
        yield name
    finally:
        run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_database(template: str, folder: Path) -> Iterator[str]:
    """A copy of the migrated ``template``: a SQLite file in ``folder``, or a new
    database on the ``DATABASE_URL`` server, dropped on the way out."""
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        path = folder / "test.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    name = f"t_{uuid.uuid4().hex[:12]}"
    run(_execute(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _database_named(server_url, name)
    finally:
        run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test; see the module docstring."""
    with fresh_database(_template, tmp_path) as url:
        yield url


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[DatabaseStorage]:
    from server.storage.attempts import DatabaseStorage
    from server.storage.database import Database

    connected = DatabaseStorage(Database(database_url))
    await connected.connect()
    try:
        yield connected
    finally:
        await connected.disconnect()


# -- Redis ----------------------------------------------------------------------------

REDIS_START_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway ``redis-server`` on ``port`` that a test may stop and start."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + REDIS_START_S
        while not redis_answers(self.url):
            assert self._process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung server)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGKILL, like a crash: nothing is saved."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=REDIS_START_S)
        self._process = None


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        if not redis_answers(configured):
            pytest.fail(f"REDIS_URL={configured} does not answer")
        yield configured
        return
    if shutil.which("redis-server") is None:
        message = "no REDIS_URL and no redis-server on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"
