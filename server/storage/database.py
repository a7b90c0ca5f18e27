"""The one database handle the stores share: ``sqlite:///file.db`` or ``postgresql://``.

:class:`Database` connects, pings and disconnects the pool, runs write transactions
(under the SQLite write lock), translates the drivers' exceptions to
:mod:`server.errors`, and keeps the interviews every store reads
(:class:`server.storage.interviews.Interviews`). The attempt store
(:mod:`server.storage.attempts`) and the results store (:mod:`server.storage.results`)
are each given the same handle; neither knows the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import asyncpg
import databases
from databases.core import Connection
from databases.interfaces import Record
from sqlalchemy.sql import ClauseElement

from protocol.ids import InterviewId
from server.errors import ServerError, Unavailable
from server.storage import _databases
from server.storage.interviews import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT, Interviews

P = ParamSpec("P")
T = TypeVar("T")
Query = ClauseElement | str

_UNAVAILABLE = (
    OSError,  # refused, unreachable, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # e.g. the pool or the connection is closed
    asyncpg.InvalidCatalogNameError,  # the database does not exist
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.OperatorInterventionError,  # shutdown, cannot connect now, cancelled
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
)
_SQLITE_UNAVAILABLE = ("unable to open", "database is locked", "disk i/o error")


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc).lower() for text in _SQLITE_UNAVAILABLE)
    return isinstance(exc, _UNAVAILABLE)


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    """Translate the drivers' exceptions (``databases`` does not wrap them)."""
    try:
        yield
    except ServerError:
        raise
    except (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError) as exc:
        raise ServerError(f"integrity violation: {exc}") from exc
    except Exception as exc:
        if _is_unavailable(exc):
            detail = str(exc) or type(exc).__name__  # a TimeoutError says nothing
            raise Unavailable(f"database unavailable: {detail}") from exc
        raise


def translated(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Maps the drivers' exceptions to :class:`ServerError` (every store method)."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        with _driver_errors():
            return await method(*args, **kwargs)

    return translated


class _Connections(sqlite3.Connection):
    """SQLite connections with this project's settings.

    ``databases`` opens a new SQLite connection per task; these pragmas are per
    connection, and ``foreign_keys`` is a no-op inside a transaction, so they are set
    as each connection opens (in aiosqlite's thread).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA busy_timeout = 5000")
        self.execute("PRAGMA foreign_keys = ON")


def _require_folder(database: str) -> None:
    # Checked here because aiosqlite leaves a thread behind when opening fails, and
    # that thread raises once the event loop is closed.
    folder = Path(database).parent
    if database not in ("", ":memory:") and not folder.is_dir():
        raise Unavailable(f"no folder {folder} for the SQLite database")


WAL_SWITCH_TRIES = 10
DB_TIMEOUT_S = 5.0
"""PostgreSQL connect and statement timeout (``DB_TIMEOUT_S``)."""


class Database:
    """A pool on ``databases``. Run :func:`server.storage.migrate` on the URL first.

    On SQLite, every write transaction holds this instance's asyncio lock:
    ``databases`` begins deferred transactions, which fail at once with "database is
    locked" under concurrent writers (STACK-NOTES). Use one instance per process and
    SQLite file, shared by every store.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        timeout_s: float = DB_TIMEOUT_S,
        cache_interviews: int = DEFAULT_MAX_COUNT,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._sqlite = url.startswith("sqlite")
        options: dict[str, Any] = (
            {"factory": _Connections}
            if self._sqlite
            else {
                "min_size": pool_min,
                "max_size": pool_max,
                # Without them, a database behind a dropped network holds every
                # call for the kernel's TCP timeout (connect: 60 s; a statement:
                # forever). They fail as Unavailable (TimeoutError).
                "timeout": timeout_s,
                "command_timeout": timeout_s,
            }
        )
        _databases.cache_compiled_statements()
        self._database = databases.Database(url, **options)
        self._timeout_s = timeout_s
        self._write_lock = asyncio.Lock() if self._sqlite else None
        self._sqlite_pool = (
            _databases.reuse_sqlite_connections(self._database)
            if self._sqlite
            else None
        )
        self.interviews = Interviews(
            self._database, max_count=cache_interviews, max_bytes=cache_bytes
        )
        self.on_events: Callable[[Sequence[InterviewId]], None] | None = None
        """Told of the interviews whose events a committed write stored (the app
        wires it to the announcer, which numbers and publishes them); never
        awaited."""

    def announce(self, interview_ids: Sequence[InterviewId]) -> None:
        """The stores call this after a transaction that stored events of
        ``interview_ids`` committed."""
        if interview_ids and self.on_events is not None:
            self.on_events(interview_ids)

    @property
    def is_sqlite(self) -> bool:
        return self._sqlite

    @translated
    async def connect(self) -> None:
        if self._sqlite:
            _require_folder(self._database.url.database)
        await self._database.connect()
        if self._sqlite_pool is not None:
            self._sqlite_pool.open()
        if self._sqlite:
            await self._use_wal()

    async def _use_wal(self) -> None:
        """Readers never wait for the writer. The mode is kept in the file, so it is
        switched once; two processes opening a fresh file together may collide on
        the switch (busy_timeout does not cover it), hence the retries."""
        for attempt in range(WAL_SWITCH_TRIES):
            mode = await self._database.fetch_val("PRAGMA journal_mode")
            if str(mode).lower() == "wal":
                return
            try:
                await self._database.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                await asyncio.sleep(0.05 * (attempt + 1))
        raise Unavailable("could not switch the SQLite file to WAL mode")

    async def disconnect(self) -> None:
        await self._database.disconnect()
        if self._sqlite_pool is not None:
            await self._sqlite_pool.close()

    @translated
    async def ping(self) -> None:
        await self._database.fetch_one("SELECT 1")

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A write transaction under this instance's write lock (see the class)."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with (
            lock,
            _databases.transaction(
                self._database, release_timeout_s=self._timeout_s
            ) as connection,
        ):
            yield connection

    # Reads outside a transaction; the stores translate their errors.

    async def fetch_one(self, query: Query) -> Record | None:
        return await self._database.fetch_one(query)

    async def fetch_all(self, query: Query) -> list[Record]:
        return await self._database.fetch_all(query)

    async def fetch_val(self, query: Query) -> Any:
        return await self._database.fetch_val(query)

    async def execute(self, query: Query) -> Any:
        return await self._database.execute(query)
