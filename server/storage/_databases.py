"""Every reach into the private parts of ``databases``, in one place.

``databases`` (last release 0.9.0, 2024-03) is the stack's database layer, and three
of its gaps cost this server dearly enough to be patched here:

* **compiled-statement cache** (:func:`cache_compiled_statements`): 0.9 compiles every
  SQLAlchemy statement on every execution, which SQLAlchemy's own engine never does:
  it looks the statement's structure up by its cache key and only binds this
  execution's values. Measured here, compiling was half of the storage layer's CPU
  time (about 18 statements per candidate attach). This wraps each backend's
  ``_compile`` to compile a statement shape once per dialect, then rebuild the
  parameters from the cache key's bind values
  (``construct_params(extracted_parameters=...)``). Statements whose SQL text depends
  on their values are never cached: DDL, expanding ``IN`` lists and literal-rendered
  parameters (``render_postcompile``), and anything SQLAlchemy declares uncacheable.
* **SQLite connection reuse** (:func:`reuse_sqlite_connections`): 0.9 opens a new
  aiosqlite connection (and so a new thread) for every query outside a transaction
  and closes it afterwards: about ten thread starts per candidate attach, each
  blocking the event loop (measured by the bench: 27 attaches/s at 95 % CPU). The
  backend's private ``_pool`` is replaced by one that keeps released connections
  open; a connection is only reused after the backend released it, when no
  transaction is open on it.
* **a failed BEGIN, COMMIT or ROLLBACK** (:func:`transaction`): 0.9 then keeps the
  connection counted as in use, so the task would reuse the dead connection for every
  later call; the connection is given back and forgotten instead.

The installed version is checked at import: another one must be checked against each
patch (tests/integration/test_databases.py has a test per patch) before it is allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiosqlite
import databases
from databases.backends.postgres import PostgresConnection
from databases.backends.sqlite import SQLiteConnection, SQLitePool
from databases.core import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement

WRITTEN_FOR = "0.9.0"
"""The ``databases`` version whose private parts this module reaches into."""


def require_version(installed: str) -> None:
    if installed != WRITTEN_FOR:
        raise RuntimeError(
            f"server.storage._databases patches databases {WRITTEN_FOR}, found "
            f"databases {installed}: check each patch (tests/integration/"
            f"test_databases.py) against it, or install databases=={WRITTEN_FOR}"
        )


require_version(databases.__version__)


# -- the compiled-statement cache ------------------------------------------------------

Compile = Callable[[Any, Any], Any]
_caches: weakref.WeakKeyDictionary[Dialect, dict[object, SQLCompiler]] = (
    weakref.WeakKeyDictionary()
)
_COMPILE_OPTIONS = {"render_postcompile": True}


class _Rebound:
    """A cached compiled statement, with this execution's parameter values."""

    def __init__(self, compiled: SQLCompiler, params: Mapping[str, Any]) -> None:
        self._compiled = compiled
        self._params = params

    @property
    def params(self) -> Mapping[str, Any]:
        return self._params

    def construct_params(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        return self._params

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


class _Precompiled:
    """Stands in for the statement: its ``compile`` returns the rebound form."""

    def __init__(self, compiled: _Rebound) -> None:
        self._compiled = compiled

    def compile(self, **kwargs: Any) -> _Rebound:
        return self._compiled


def _cacheable(compiled: SQLCompiler) -> bool:
    return not (compiled.post_compile_params or compiled.literal_execute_params)


def _cached(original: Compile) -> Compile:
    def _compile(connection: Any, query: Any) -> Any:
        if isinstance(query, DDLElement) or not isinstance(query, ClauseElement):
            return original(connection, query)
        key = query._generate_cache_key()
        if key is None or any(bind.expanding for bind in key.bindparams):
            return original(connection, query)
        dialect: Dialect = connection._dialect
        cache = _caches.setdefault(dialect, {})
        compiled = cache.get(key.key)
        if compiled is None:
            compiled = dialect.statement_compiler(
                dialect, query, cache_key=key, compile_kwargs=_COMPILE_OPTIONS
            )
            if not _cacheable(compiled):
                return original(connection, query)
            cache[key.key] = compiled
        params = compiled.construct_params(extracted_parameters=key.bindparams)
        return original(connection, _Precompiled(_Rebound(compiled, params)))

    _compile.__wrapped__ = original  # type: ignore[attr-defined]
    return _compile


def cache_compiled_statements() -> None:
    """Cache compilation in both backends; calling it again changes nothing."""
    backends: tuple[Any, ...] = (SQLiteConnection, PostgresConnection)
    for backend in backends:
        if not hasattr(backend._compile, "__wrapped__"):
            backend._compile = _cached(backend._compile)


def cached_shapes() -> int:
    """How many statement shapes are compiled and kept (tests)."""
    return sum(len(cache) for cache in _caches.values())


# -- SQLite connection reuse -----------------------------------------------------------

IDLE_CONNECTIONS = 8
OPEN_CONNECTIONS = 8


class ReusingSQLitePool(SQLitePool):
    """Keeps up to ``idle`` connections open for the next query, and never has more
    than ``open`` at once: ``databases`` otherwise opens one connection (and one
    aiosqlite thread, and a descriptor) per concurrent task, so a thousand sockets
    attaching at once paid a thousand thread starts and ran ten times slower than
    the same queries one after the other. Beyond ``open``, a query waits its turn.
    No task holds a connection while it waits for anything but its own query (the
    write lock is taken before the connection), so waiting cannot deadlock."""

    def __init__(
        self,
        pool: SQLitePool,
        *,
        idle: int = IDLE_CONNECTIONS,
        open: int = OPEN_CONNECTIONS,
    ) -> None:
        self.__dict__.update(pool.__dict__)
        self._idle: list[aiosqlite.Connection] = []
        self._idle_max = idle
        self._slots = asyncio.Semaphore(open)
        self._closed = False

    @property
    def idle(self) -> int:
        """Connections kept open for the next query."""
        return len(self._idle)

    async def acquire(self) -> aiosqlite.Connection:
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            connection: aiosqlite.Connection = await super().acquire()
        except BaseException:
            self._slots.release()
            raise
        return connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        try:
            keep = not self._closed and not connection.in_transaction
            if keep and len(self._idle) < self._idle_max:
                self._idle.append(connection)
            else:
                await super().release(connection)
        finally:
            self._slots.release()

    def open(self) -> None:
        """Keep connections idle again (the database connected again)."""
        self._closed = False

    async def close(self) -> None:
        # A connection still in use (a task the shutdown did not wait for) is closed
        # when it comes back, not kept idle in a closed pool for the collector.
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await super().release(connection)


def reuse_sqlite_connections(database: databases.Database) -> ReusingSQLitePool:
    """Install the pool on ``database`` (a SQLite one, before ``connect``)."""
    backend: Any = database._backend
    pool = ReusingSQLitePool(backend._pool)
    backend._pool = pool
    return pool


# -- transactions ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def transaction(
    database: databases.Database, *, release_timeout_s: float
) -> AsyncIterator[Connection]:
    """A transaction on this task's connection, which is given back to the pool
    (asyncpg closes a broken one) when its BEGIN, COMMIT or ROLLBACK fails."""
    connection = database.connection()
    held = connection._connection_counter
    try:
        async with connection, connection.transaction():
            yield connection
    except BaseException:
        if connection._connection_counter > held:
            await _forget(database, connection, held, release_timeout_s)
        raise


async def _forget(
    database: databases.Database,
    connection: Connection,
    held: int,
    release_timeout_s: float,
) -> None:
    """Undo what 0.9 leaves behind when a transaction's BEGIN, COMMIT or ROLLBACK
    fails (a lost connection): it keeps the connection counted as in use. Give it
    back to the pool and let the task start afresh."""
    connection._connection_counter = held
    if held:
        return  # an enclosing block of this task still holds it
    with contextlib.suppress(Exception):
        async with asyncio.timeout(release_timeout_s):
            await connection._connection.release()
    if database._connection is connection:
        database._connection = None
