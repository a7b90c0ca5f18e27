"""Persistence of interviews and attempts (docs/design.md, "Storage interface").

Raises the exceptions of :mod:`server.errors`: :class:`Conflict`,
:class:`AlreadyInProgress`, :class:`QuotaExceeded`, :class:`Unavailable` (the drivers'
errors, translated), and :class:`ServerError` for an integrity violation.

Every change of an attempt is one transaction guarded by the state it was decided from
(design.md, "Time and truth"): ``UPDATE sessions ... WHERE status = 'in_progress' AND
question_index = :before [AND owner_epoch = :fence] RETURNING id``. RETURNING, not a
row count, tells whether it applied, because ``databases`` returns no row count for
PostgreSQL updates (STACK-NOTES).
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record

from protocol.attempt import Attempt, Change, Draft, Status
from protocol.audit import AuditEntry, LateAnswerBudget
from protocol.definition import InterviewDefinition
from protocol.events import News, of_audit, question_started
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.batching import Batcher
from server.errors import AlreadyInProgress, Conflict, ServerError, Unavailable
from server.storage import events
from server.storage._audit import insert_audit
from server.storage._results_sql import ids_match
from server.storage.database import Database, translated
from server.storage.interviews import definition_bytes
from server.storage.migrations import migrate
from server.storage.quota import Quota, count_interview
from server.storage.records import InterviewRecord, Invitee
from server.storage.tables import (
    SESSION_WITH_DRAFT,
    answers,
    attempt_from,
    audit_from,
    audit_log,
    drafts,
    guarded,
    insert_answers,
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
    "Quota",
    "Storage",
    "migrate",
]


class Storage(Protocol):
    """The storage port (docs/design.md, "Storage interface").

    ``create_attempt`` writes ``audit`` to the new attempt, and ``abandon`` (Start
    Over) is marked abandoned under the usual guard. ``commit``, ``save_draft`` and
    ``create_attempt`` raise :class:`Conflict` when the guard fails; ``claim`` raises
    it for an unknown attempt. Any method may raise :class:`server.errors.Unavailable`.
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
        quota: Quota | None = None,
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
    async def archived_at(self, interview_id: InterviewId) -> Millis | None: ...
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
    async def attach(self, attempt: Attempt, entry: AuditEntry) -> int: ...
    async def owner_epoch(self, session_id: SessionId) -> int | None: ...
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
        self,
        session_id: SessionId,
        entries: Sequence[AuditEntry],
        *,
        interview_id: InterviewId | None = None,
    ) -> None: ...
    async def audit_log(self, session_id: SessionId) -> list[AuditEntry]: ...
    async def due_attempts(self, now: Millis, limit: int) -> list[SessionId]: ...


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


class DatabaseStorage:
    """:class:`Storage` on the shared :class:`Database` handle.

    Args:
        late_answers: what the audit log keeps whole of one question's late
            answers (:func:`protocol.audit.late_answer_kept`; its defaults when
            ``None``).
    """

    def __init__(
        self,
        database: Database,
        *,
        late_answers: LateAnswerBudget | None = None,
    ) -> None:
        self.database = database
        self.late_answers = late_answers or LateAnswerBudget()
        self._sqlite = database.is_sqlite
        self._interviews = database.interviews
        # Group commit (server/batching.py): attaches and audit entries arriving
        # while one transaction runs share the next one.
        self._attaches: Batcher[_Attach, int] = Batcher(
            self._attach_many, max_items=GROUP_MAX
        )
        self._audits: Batcher[_Append, None] = Batcher(
            self._append_many, max_items=GROUP_MAX
        )
        self._loads: Batcher[str, Attempt | None] = Batcher(
            functools.partial(self._load_many, by_candidate=False),
            max_items=GROUP_MAX,
        )
        self._actives: Batcher[str, Attempt | None] = Batcher(
            functools.partial(self._load_many, by_candidate=True),
            max_items=GROUP_MAX,
        )

    async def _insert_audit(
        self,
        connection: Connection,
        session_id: SessionId,
        entries: Sequence[AuditEntry],
    ) -> None:
        await insert_audit(
            connection, session_id, entries, self.late_answers, sqlite=self._sqlite
        )

    async def _record_events(
        self,
        connection: Connection,
        interview_id: InterviewId | None,
        session_id: SessionId,
        news: Sequence[News],
    ) -> list[InterviewId]:
        """Number and store the events of a change: last in its transaction
        (server/storage/events.py)."""
        if not news:
            return []
        if interview_id is None:
            interview_id = InterviewId(
                await connection.fetch_val(
                    sa.select(sessions.c.interview_id).where(
                        sessions.c.id == session_id
                    )
                )
            )
        pairs = [(interview_id, item) for item in news]
        return await events.append(connection, pairs, sqlite=self._sqlite)

    async def connect(self) -> None:
        await self.database.connect()

    async def disconnect(self) -> None:
        await self.database.disconnect()

    async def ping(self) -> None:
        await self.database.ping()

    @translated
    async def create_interview(
        self,
        *,
        org: str,
        created_by: UserId,
        definition: InterviewDefinition,
        now: Millis,
        quota: Quota | None = None,
    ) -> InterviewRecord:
        """Store a new interview, counted in ``org``'s usage (whatever ``quota``).

        Raises:
            QuotaExceeded: it would take ``org`` past ``quota``; nothing is stored.
        """
        record = InterviewRecord(
            InterviewId(_new_id()), org, created_by, now, definition
        )
        row = interview_row(record)
        size = definition_bytes(str(row["definition"]))
        async with self.database.transaction() as connection:
            await count_interview(connection, org, size, quota, sqlite=self._sqlite)
            await connection.execute(interviews.insert().values(row))
            await connection.execute(questions.insert().values(question_rows(record)))
        return self._interviews.remember(record, size)[0]

    @translated
    async def get_interview(self, interview_id: InterviewId) -> InterviewRecord | None:
        cached = await self._interviews.get(interview_id)
        return None if cached is None else cached[0]

    @translated
    async def list_interviews(self, org: str) -> list[InterviewRecord]:
        query = (
            interviews.select()
            .where(interviews.c.org == org)
            .order_by(interviews.c.created_at, interviews.c.id)
        )
        rows = await self.database.fetch_all(query)
        return [self._interviews.known(row) for row in rows]

    @translated
    async def invite(
        self, interview_id: InterviewId, invitees: Sequence[Invitee], now: Millis
    ) -> None:
        # One row per candidate: PostgreSQL refuses to upsert a row twice in one go.
        unique = {invitee.id: invitee for invitee in invitees}.values()
        if not unique:
            return
        rows = invitation_rows(interview_id, unique, now)
        # Inviting again updates the name and email, restores a revoked invitation,
        # and keeps the first time.
        update = ("name", "email", "revoked_at", "revoked_by")
        statement = upsert(invitations, rows, update, sqlite=self._sqlite)
        async with self.database.transaction() as connection:
            await connection.execute(statement)

    @translated
    async def is_invited(self, interview_id: InterviewId, candidate_id: UserId) -> bool:
        """Whether the candidate is invited and the invitation was not revoked."""
        query = sa.select(invitations.c.candidate_id).where(
            invitations.c.interview_id == interview_id,
            invitations.c.candidate_id == candidate_id,
            invitations.c.revoked_at.is_(None),
        )
        return await self.database.fetch_one(query) is not None

    @translated
    async def archived_at(self, interview_id: InterviewId) -> Millis | None:
        """When the interview was archived; ``None`` if it is not (or not there).

        Read from the database every time, not from the interview cache: another
        instance may have archived it a moment ago.
        """
        query = sa.select(interviews.c.archived_at).where(
            interviews.c.id == interview_id
        )
        value = await self.database.fetch_val(query)
        return None if value is None else int(value)

    @translated
    async def count_attempts(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> int:
        query = sa.select(sa.func.count()).where(
            sessions.c.interview_id == interview_id,
            sessions.c.candidate_id == candidate_id,
        )
        return int(await self.database.fetch_val(query))

    async def active_attempt(self, candidate_id: UserId) -> Attempt | None:
        """The candidate's attempt in progress, of any interview. Reads asked for
        while one runs share the next (two queries for a batch): a reconnect storm
        reads its attempts a batch at a time, and each read still begins after its
        caller asked, so it sees what the caller committed before."""
        return await self._actives.submit(candidate_id)

    async def load_attempt(self, session_id: SessionId) -> Attempt | None:
        """The attempt, read as :meth:`active_attempt` reads (shared batches)."""
        return await self._loads.submit(session_id)

    @translated
    async def _load_many(
        self, keys: Sequence[str], *, by_candidate: bool
    ) -> list[Attempt | None]:
        column = sessions.c.candidate_id if by_candidate else sessions.c.id
        wanted = sorted(set(keys))
        query = SESSION_WITH_DRAFT.where(ids_match(column, wanted, sqlite=self._sqlite))
        if by_candidate:  # one at most per candidate (ux_sessions_in_progress)
            query = query.where(sessions.c.status == Status.IN_PROGRESS.value)
        rows = await self.database.fetch_all(query)
        found: dict[str, Attempt] = {}
        if rows:
            ids = sorted(row["id"] for row in rows)
            answer_rows = await self.database.fetch_all(
                answers.select()
                .where(ids_match(answers.c.session_id, ids, sqlite=self._sqlite))
                .order_by(answers.c.session_id, answers.c.question_index)
            )
            answered: dict[str, list[Record]] = {}
            for answer in answer_rows:
                answered.setdefault(answer["session_id"], []).append(answer)
            for row in rows:
                cached = await self._interviews.get(row["interview_id"])
                assert cached is not None, "sessions.interview_id is a foreign key"
                record, views = cached
                attempt = attempt_from(
                    row, answered.get(row["id"], ()), record.definition, views
                )
                found[row["candidate_id"] if by_candidate else row["id"]] = attempt
        return [found.get(key) for key in keys]

    @translated
    async def create_attempt(
        self,
        attempt: Attempt,
        *,
        candidate_name: str,
        audit: Sequence[AuditEntry],
        abandon: Attempt | None = None,
    ) -> None:
        session_id = attempt.session_id
        news = [*of_audit(session_id, audit), *question_started(None, attempt)]
        try:
            async with self.database.transaction() as connection:
                if abandon is not None:
                    await _advance(connection, abandon, _ABANDONED, fence=None)
                row = session_row(attempt, candidate_name)
                await connection.execute(sessions.insert().values(row))
                await self._insert_audit(connection, session_id, audit)
                made = await self._record_events(
                    connection, attempt.interview_id, session_id, news
                )
        except _UNIQUE_VIOLATION as exc:
            exists = _attempt_exists(exc, attempt)
            if exists is None:
                raise
            raise exists from exc
        self.database.announce(made)

    @translated
    async def claim(self, session_id: SessionId) -> int:
        async with self.database.transaction() as connection:
            row = await connection.fetch_one(_claim(session_id))
        if row is None:
            raise Conflict(f"no attempt {session_id}")
        return int(row["owner_epoch"])

    async def attach(self, attempt: Attempt, entry: AuditEntry) -> int:
        """Claim ``attempt`` (:meth:`claim`: the new fence) and audit the attach
        (``entry``) in one transaction, shared with the attaches that arrive while
        the previous one commits: a reconnect storm costs a commit per batch, not
        two per socket.

        Raises:
            Conflict: no such attempt.
        """
        return await self._attaches.submit(
            _Attach(attempt.session_id, attempt.interview_id, entry)
        )

    @translated
    async def _attach_many(self, items: Sequence[_Attach]) -> list[int | BaseException]:
        results: list[int | BaseException] = [0] * len(items)
        news: list[tuple[InterviewId, News]] = []
        # In the order of the attempts' ids: two batches never wait on each other's
        # rows in a cycle (PostgreSQL).
        order = sorted(range(len(items)), key=lambda i: items[i].session_id)
        async with self.database.transaction() as connection:
            for i in order:
                item = items[i]
                row = await connection.fetch_one(_claim(item.session_id))
                if row is None:
                    results[i] = Conflict(f"no attempt {item.session_id}")
                    continue
                results[i] = int(row["owner_epoch"])
                await self._insert_audit(connection, item.session_id, [item.entry])
                news += [
                    (item.interview_id, n)
                    for n in of_audit(item.session_id, [item.entry])
                ]
            made = await events.append(connection, news, sqlite=self._sqlite)
        self.database.announce(made)
        return results

    @translated
    async def owner_epoch(self, session_id: SessionId) -> int | None:
        """The epoch of the attempt's last :meth:`claim` (its last attach); ``None``
        when there is no such attempt."""
        statement = sa.select(sessions.c.owner_epoch).where(sessions.c.id == session_id)
        value = await self.database.fetch_val(statement)
        return None if value is None else int(value)

    @translated
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
        news = [
            *of_audit(session_id, audit),
            *question_started(change.before, change.after),
        ]
        async with self.database.transaction() as connection:
            after = progress(change.after)
            await _advance(connection, change.before, after, fence=fence)
            await insert_answers(connection, session_id, change.answers, now)
            await self._insert_audit(connection, session_id, audit)
            made = await self._record_events(
                connection, change.before.interview_id, session_id, news
            )
        self.database.announce(made)

    @translated
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
        async with self.database.transaction() as connection:
            # A no-op write as the guard: it holds the session row (PostgreSQL) until
            # the draft is stored, and it makes the SQLite transaction a writer from
            # its first statement, so busy_timeout applies.
            guard = guarded(session_id, draft.question_index, fence)
            keep = {"owner_epoch": sessions.c.owner_epoch}
            if not await update_guarded(connection, guard, keep):
                raise Conflict(f"attempt {session_id} changed: reload it")
            await connection.execute(statement)

    @translated
    async def append_audit(
        self,
        session_id: SessionId,
        entries: Sequence[AuditEntry],
        *,
        interview_id: InterviewId | None = None,
    ) -> None:
        """Append ``entries`` and their events; ``interview_id`` (the attempt's)
        saves a read when the caller knows it. Entries of other attempts arriving
        meanwhile share the transaction (a detach storm commits once per batch)."""
        if entries:
            await self._audits.submit(_Append(session_id, interview_id, tuple(entries)))

    async def _append_many(
        self, items: Sequence[_Append]
    ) -> list[None | BaseException]:
        try:
            await self._append_together(items)
        except Unavailable:
            raise
        except ServerError:
            if len(items) == 1:
                raise
        else:
            return [None] * len(items)
        # One the database refuses (say, of no attempt) must not fail the others.
        results: list[None | BaseException] = []
        for item in items:
            try:
                await self._append_together([item])
            except Unavailable:
                raise
            except ServerError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    @translated
    async def _append_together(self, items: Sequence[_Append]) -> None:
        made: list[InterviewId] = []
        async with self.database.transaction() as connection:
            for item in sorted(items, key=lambda item: item.session_id):
                await self._insert_audit(connection, item.session_id, item.entries)
                news = of_audit(item.session_id, item.entries)
                made += await self._record_events(
                    connection, item.interview_id, item.session_id, news
                )
        self.database.announce(made)

    @translated
    async def audit_log(self, session_id: SessionId) -> list[AuditEntry]:
        query = (
            audit_log.select()
            .where(audit_log.c.session_id == session_id)
            .order_by(audit_log.c.id)
        )
        return [audit_from(row) for row in await self.database.fetch_all(query)]

    @translated
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
        return [SessionId(row["id"]) for row in await self.database.fetch_all(query)]


GROUP_MAX = 200
"""The most attaches, or audit appends, one shared transaction takes."""


@dataclass(frozen=True, slots=True)
class _Attach:
    session_id: SessionId
    interview_id: InterviewId
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class _Append:
    session_id: SessionId
    interview_id: InterviewId | None
    entries: tuple[AuditEntry, ...]


def _claim(session_id: SessionId) -> sa.UpdateBase:
    """owner_epoch += 1 (every attach: the new fence), returning it."""
    return (
        sessions.update()
        .where(sessions.c.id == session_id)
        .values(owner_epoch=sessions.c.owner_epoch + 1)
        .returning(sessions.c.owner_epoch)
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
