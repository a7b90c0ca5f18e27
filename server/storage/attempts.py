"""Persistence of interviews and attempts (docs/design.md, "Storage interface").

Raises the exceptions of :mod:`server.errors`: :class:`Conflict`,
:class:`AlreadyInProgress`, :class:`Unavailable` (the drivers' errors, translated), and
:class:`ServerError` for an integrity violation.

Every change of an attempt is one transaction guarded by the state it was decided from
(design.md, "Time and truth"): ``UPDATE sessions ... WHERE status = 'in_progress' AND
question_index = :before [AND owner_epoch = :fence] RETURNING id``. RETURNING, not a
row count, tells whether it applied, because ``databases`` returns no row count for
PostgreSQL updates (STACK-NOTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import asyncpg
import sqlalchemy as sa
from databases import Database
from databases.core import Connection
from databases.interfaces import Record

from protocol.attempt import (
    Attempt,
    Change,
    Draft,
    QuestionView,
    Status,
)
from protocol.audit import AuditEntry
from protocol.definition import InterviewDefinition, Settings
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.errors import AlreadyInProgress, Conflict, ServerError, Unavailable
from server.storage import _compiled as compiled_statements
from server.storage._sqlite import reuse_connections
from server.storage.migrations import migrate
from server.storage.tables import (
    SESSION_WITH_DRAFT,
    answers,
    attempt_from,
    audit_from,
    audit_log,
    drafts,
    guarded,
    insert_answers,
    insert_audit,
    interview_row,
    interviews,
    invitation_rows,
    invitations,
    progress,
    question_rows,
    questions,
    session_row,
    sessions,
    update_guarded,
    upsert,
)

__all__ = [
    "DatabaseStorage",
    "InterviewRecord",
    "Invitee",
    "Storage",
    "migrate",
]


@dataclass(frozen=True, slots=True)
class InterviewRecord:
    """A stored interview; its definition includes the keys (recruiters only)."""

    id: InterviewId
    org: str
    created_by: UserId
    created_at: Millis
    definition: InterviewDefinition

    @property
    def title(self) -> str:
        return self.definition.title

    @property
    def settings(self) -> Settings:
        return self.definition.settings

    @property
    def questions(self) -> tuple[QuestionView, ...]:
        return self.definition.question_views()


@dataclass(frozen=True, slots=True)
class Invitee:
    id: UserId
    name: str
    email: str | None


class Storage(Protocol):
    """The storage port (docs/design.md, "Storage interface").

    ``create_attempt`` writes ``audit`` to the new attempt, and ``abandon`` (Start
    Over) is marked abandoned under the usual guard. ``commit``, ``save_draft`` and
    ``create_attempt`` raise :class:`Conflict` when the guard fails; ``claim`` raises
    it for an unknown attempt. Any method may raise :class:`Unavailable`.
    """

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def ping(self) -> None: ...
    async def create_interview(
        self,
        *,
        org: str,
        created_by: UserId,
        definition: InterviewDefinition,
        now: Millis,
    ) -> InterviewRecord: ...
    async def get_interview(
        self, interview_id: InterviewId
    ) -> InterviewRecord | None: ...
    async def list_interviews(self, org: str) -> list[InterviewRecord]: ...
    async def invite(
        self, interview_id: InterviewId, invitees: Sequence[Invitee], now: Millis
    ) -> None: ...
    async def is_invited(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> bool: ...
    async def count_attempts(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> int: ...
    async def active_attempt(self, candidate_id: UserId) -> Attempt | None: ...
    async def load_attempt(self, session_id: SessionId) -> Attempt | None: ...
    async def create_attempt(
        self,
        attempt: Attempt,
        *,
        candidate_name: str,
        audit: Sequence[AuditEntry],
        abandon: Attempt | None = None,
    ) -> None: ...
    async def claim(self, session_id: SessionId) -> int: ...
    async def commit(
        self,
        change: Change,
        *,
        fence: int | None,
        audit: Sequence[AuditEntry],
        now: Millis | None = None,
    ) -> None: ...
    async def save_draft(
        self, session_id: SessionId, draft: Draft, *, fence: int | None
    ) -> None: ...
    async def append_audit(
        self, session_id: SessionId, entries: Sequence[AuditEntry]
    ) -> None: ...
    async def audit_log(self, session_id: SessionId) -> list[AuditEntry]: ...
    async def due_attempts(self, now: Millis, limit: int) -> list[SessionId]: ...


Views = tuple[QuestionView, ...]
P = ParamSpec("P")
T = TypeVar("T")

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
# Start Over (Status docs in protocol/attempt.py): kept, no longer due.
_ABANDONED = {"status": Status.ABANDONED.value, "expires_at": None}
_UNIQUE_VIOLATION = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)
_SQLITE_UNIQUE = "UNIQUE constraint failed: "
# The constraint's name on PostgreSQL, its columns in SQLite's message.
_IN_PROGRESS_ELSEWHERE = {"ux_sessions_in_progress", "sessions.candidate_id"}
_SAME_ATTEMPT = {
    "uq_sessions_number",
    "sessions.interview_id, sessions.candidate_id, sessions.number",
    "sessions_pkey",
    "sessions.id",
}


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


def _translated(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        with _driver_errors():
            return await method(*args, **kwargs)

    return translated


translated = _translated
"""Maps the drivers' exceptions to :class:`ServerError` (for the other stores)."""


def _unique_violation(exc: Exception) -> str | None:
    """The violated unique constraint, by name (PostgreSQL) or columns (SQLite)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return str(exc.constraint_name)
    message = str(exc)
    return (
        message.removeprefix(_SQLITE_UNIQUE)
        if message.startswith(_SQLITE_UNIQUE)
        else None
    )


def _attempt_exists(exc: Exception, attempt: Attempt) -> ServerError | None:
    violated = _unique_violation(exc)
    if violated in _IN_PROGRESS_ELSEWHERE:
        return AlreadyInProgress(f"{attempt.candidate_id} has an attempt in progress")
    if violated in _SAME_ATTEMPT:
        return Conflict(f"attempt {attempt.number} of {attempt.candidate_id} exists")
    return None


def _new_id() -> str:
    # databases ignores Python-side column defaults: ids are made here.
    return uuid.uuid4().hex


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


class DatabaseStorage:
    """:class:`Storage` on ``databases``: ``sqlite:///file.db`` or ``postgresql://``.

    Run :func:`migrate` on the URL first. On SQLite, every write transaction holds
    this instance's asyncio lock: ``databases`` begins deferred transactions, which
    fail at once with "database is locked" under concurrent writers (STACK-NOTES).
    Use one instance per process and SQLite file.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        timeout_s: float = DB_TIMEOUT_S,
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
        compiled_statements.install()
        self._database = Database(url, **options)
        self._timeout_s = timeout_s
        self._write_lock = asyncio.Lock() if self._sqlite else None
        self._sqlite_pool = reuse_connections(self._database) if self._sqlite else None
        self._interviews: dict[InterviewId, tuple[InterviewRecord, Views]] = {}

    @_translated
    async def connect(self) -> None:
        if self._sqlite:
            _require_folder(self._database.url.database)
        await self._database.connect()
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

    @property
    def database(self) -> Database:
        """The pool, for the stores of other tables (``server/results.py``)."""
        return self._database

    @property
    def is_sqlite(self) -> bool:
        return self._sqlite

    def writing(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A write transaction under this instance's write lock (see the class)."""
        return self._writing()

    @_translated
    async def ping(self) -> None:
        await self._database.fetch_one("SELECT 1")

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[Connection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            connection = self._database.connection()
            held = connection._connection_counter
            try:
                async with connection, connection.transaction():
                    yield connection
            except BaseException:
                if connection._connection_counter > held:
                    await self._forget(connection, held)
                raise

    async def _forget(self, connection: Connection, held: int) -> None:
        """Undo what ``databases`` 0.9 leaves behind when a transaction's BEGIN,
        COMMIT or ROLLBACK fails (a lost connection): it keeps the connection
        counted as in use, so this task would reuse the dead connection for every
        later call. Give it back to the pool (asyncpg closes a broken one) and let
        the task start afresh."""
        connection._connection_counter = held
        if held:
            return  # an enclosing block of this task still holds it
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                await connection._connection.release()
        if self._database._connection is connection:
            self._database._connection = None

    async def _interview(
        self, interview_id: InterviewId
    ) -> tuple[InterviewRecord, Views] | None:
        cached = self._interviews.get(interview_id)
        if cached is None:
            query = interviews.select().where(interviews.c.id == interview_id)
            row = await self._database.fetch_one(query)
            cached = None if row is None else self._remember(_interview_from(row))
        return cached

    def _remember(self, record: InterviewRecord) -> tuple[InterviewRecord, Views]:
        # Interviews are immutable once created: their views are computed once.
        cached = self._interviews[record.id] = (record, record.questions)
        return cached

    @_translated
    async def create_interview(
        self,
        *,
        org: str,
        created_by: UserId,
        definition: InterviewDefinition,
        now: Millis,
    ) -> InterviewRecord:
        record = InterviewRecord(
            InterviewId(_new_id()), org, created_by, now, definition
        )
        async with self._writing() as connection:
            await connection.execute(interviews.insert().values(interview_row(record)))
            await connection.execute(questions.insert().values(question_rows(record)))
        return self._remember(record)[0]

    @_translated
    async def get_interview(self, interview_id: InterviewId) -> InterviewRecord | None:
        cached = await self._interview(interview_id)
        return None if cached is None else cached[0]

    @_translated
    async def list_interviews(self, org: str) -> list[InterviewRecord]:
        query = (
            interviews.select()
            .where(interviews.c.org == org)
            .order_by(interviews.c.created_at, interviews.c.id)
        )
        rows = await self._database.fetch_all(query)
        return [self._known(row) for row in rows]

    def _known(self, row: Record) -> InterviewRecord:
        cached = self._interviews.get(row["id"])
        return (cached or self._remember(_interview_from(row)))[0]

    @_translated
    async def invite(
        self, interview_id: InterviewId, invitees: Sequence[Invitee], now: Millis
    ) -> None:
        # One row per candidate: PostgreSQL refuses to upsert a row twice in one go.
        unique = {invitee.id: invitee for invitee in invitees}.values()
        if not unique:
            return
        rows = invitation_rows(interview_id, unique, now)
        # Inviting again updates the name and email, and keeps the first time.
        statement = upsert(invitations, rows, ("name", "email"), sqlite=self._sqlite)
        async with self._writing() as connection:
            await connection.execute(statement)

    @_translated
    async def is_invited(self, interview_id: InterviewId, candidate_id: UserId) -> bool:
        query = sa.select(invitations.c.candidate_id).where(
            invitations.c.interview_id == interview_id,
            invitations.c.candidate_id == candidate_id,
        )
        return await self._database.fetch_one(query) is not None

    @_translated
    async def count_attempts(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> int:
        query = sa.select(sa.func.count()).where(
            sessions.c.interview_id == interview_id,
            sessions.c.candidate_id == candidate_id,
        )
        return int(await self._database.fetch_val(query))

    @_translated
    async def active_attempt(self, candidate_id: UserId) -> Attempt | None:
        return await self._attempt(
            sessions.c.candidate_id == candidate_id,
            sessions.c.status == Status.IN_PROGRESS.value,
        )

    @_translated
    async def load_attempt(self, session_id: SessionId) -> Attempt | None:
        return await self._attempt(sessions.c.id == session_id)

    async def _attempt(self, *where: sa.ColumnElement[bool]) -> Attempt | None:
        row = await self._database.fetch_one(SESSION_WITH_DRAFT.where(*where))
        if row is None:
            return None
        cached = await self._interview(row["interview_id"])
        assert cached is not None, "sessions.interview_id is a foreign key"
        record, views = cached
        query = (
            answers.select()
            .where(answers.c.session_id == row["id"])
            .order_by(answers.c.question_index)
        )
        answer_rows = await self._database.fetch_all(query)
        return attempt_from(row, answer_rows, record.definition, views)

    @_translated
    async def create_attempt(
        self,
        attempt: Attempt,
        *,
        candidate_name: str,
        audit: Sequence[AuditEntry],
        abandon: Attempt | None = None,
    ) -> None:
        try:
            async with self._writing() as connection:
                if abandon is not None:
                    await _advance(connection, abandon, _ABANDONED, fence=None)
                row = session_row(attempt, candidate_name)
                await connection.execute(sessions.insert().values(row))
                await insert_audit(connection, attempt.session_id, audit)
        except _UNIQUE_VIOLATION as exc:
            exists = _attempt_exists(exc, attempt)
            if exists is None:
                raise
            raise exists from exc

    @_translated
    async def claim(self, session_id: SessionId) -> int:
        statement = (
            sessions.update()
            .where(sessions.c.id == session_id)
            .values(owner_epoch=sessions.c.owner_epoch + 1)
            .returning(sessions.c.owner_epoch)
        )
        async with self._writing() as connection:
            row = await connection.fetch_one(statement)
        if row is None:
            raise Conflict(f"no attempt {session_id}")
        return int(row["owner_epoch"])

    @_translated
    async def commit(
        self,
        change: Change,
        *,
        fence: int | None,
        audit: Sequence[AuditEntry],
        now: Millis | None = None,
    ) -> None:
        """Apply ``change`` if the attempt is still where ``change.before`` left it
        (:class:`Conflict` otherwise). The answers it records claim their grading
        jobs as of ``now`` (default: their submission time)."""
        session_id = change.before.session_id
        async with self._writing() as connection:
            after = progress(change.after)
            await _advance(connection, change.before, after, fence=fence)
            await insert_answers(connection, session_id, change.answers, now)
            await insert_audit(connection, session_id, audit)

    @_translated
    async def save_draft(
        self, session_id: SessionId, draft: Draft, *, fence: int | None
    ) -> None:
        row = {
            "session_id": session_id,
            "question_index": draft.question_index,
            "text": draft.text,
            "saved_at": draft.saved_at,
        }
        statement = upsert(drafts, [row], ("text", "saved_at"), sqlite=self._sqlite)
        async with self._writing() as connection:
            # A no-op write as the guard: it holds the session row (PostgreSQL) until
            # the draft is stored, and it makes the SQLite transaction a writer from
            # its first statement, so busy_timeout applies.
            guard = guarded(session_id, draft.question_index, fence)
            keep = {"owner_epoch": sessions.c.owner_epoch}
            if not await update_guarded(connection, guard, keep):
                raise Conflict(f"attempt {session_id} changed: reload it")
            await connection.execute(statement)

    @_translated
    async def append_audit(
        self, session_id: SessionId, entries: Sequence[AuditEntry]
    ) -> None:
        if entries:
            async with self._writing() as connection:
                await insert_audit(connection, session_id, entries)

    @_translated
    async def audit_log(self, session_id: SessionId) -> list[AuditEntry]:
        query = (
            audit_log.select()
            .where(audit_log.c.session_id == session_id)
            .order_by(audit_log.c.id)
        )
        return [audit_from(row) for row in await self._database.fetch_all(query)]

    @_translated
    async def due_attempts(self, now: Millis, limit: int) -> list[SessionId]:
        query = (
            sa.select(sessions.c.id)
            .where(
                sessions.c.status == Status.IN_PROGRESS.value,
                sessions.c.expires_at < now,
            )
            .order_by(sessions.c.expires_at, sessions.c.id)
            .limit(limit)
        )
        return [SessionId(row["id"]) for row in await self._database.fetch_all(query)]


def _interview_from(row: Record) -> InterviewRecord:
    return InterviewRecord(
        id=InterviewId(row["id"]),
        org=row["org"],
        created_by=UserId(row["created_by"]),
        created_at=row["created_at"],
        definition=InterviewDefinition.model_validate_json(row["definition"]),
    )


async def _advance(
    connection: Connection,
    before: Attempt,
    values: Mapping[str, object],
    *,
    fence: int | None,
) -> None:
    guard = guarded(before.session_id, before.question_index, fence)
    if not await update_guarded(connection, guard, values):
        raise Conflict(f"attempt {before.session_id} changed: reload it")
