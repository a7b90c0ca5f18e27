"""Writing and paging the audit log (SQLAlchemy Core), late answers bounded.

A late answer's entry goes through the question's tally (the ``late_answers`` row of
the attempt and question) in the transaction that writes it: the tally is counted up
first, which holds its row on PostgreSQL until the transaction ends (SQLite has one
writer at a time), so two late answers to one question are decided in turn, by
:func:`protocol.audit.late_answer_kept`, whichever connection or instance sent them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from databases.core import Connection
from sqlalchemy.dialects import postgresql, sqlite as sqlite_dialect

from protocol.audit import (
    AuditEntry,
    AuditKind,
    LateAnswerBudget,
    LateAnswerTally,
    late_answer_kept,
    text_digest,
)
from protocol.ids import SessionId
from protocol.webhooks.events import EventType
from server.storage._outbox import record_session_event
from server.storage.tables import audit_log, audit_row, late_answers

AUDIT_PAGE = 200
"""Audit entries per page unless asked otherwise."""
MAX_AUDIT_PAGE = 1000
"""The most audit entries one page holds."""


async def insert_audit(
    connection: Connection,
    session_id: SessionId,
    entries: Sequence[AuditEntry],
    budget: LateAnswerBudget,
    *,
    sqlite: bool,
) -> None:
    # A row at a time: a single-row statement has one shape, compiled once
    # (server/storage/_databases.py).
    for entry in entries:
        stored: AuditEntry | None = entry
        if entry.kind is AuditKind.LATE_ANSWER and "text" in entry.data:
            tally = await _count_late(connection, session_id, entry, sqlite=sqlite)
            stored = late_answer_kept(entry, tally, budget)
            if stored is entry:
                await _keep_late(connection, session_id, entry)
        if stored is not None:
            await connection.execute(
                audit_log.insert().values(audit_row(session_id, stored))
            )
        if entry.kind is AuditKind.COMPLETED:
            await _completed(connection, session_id, entry)


async def _completed(
    connection: Connection, session_id: SessionId, entry: AuditEntry
) -> None:
    """The webhook of an attempt's completion, in the transaction that stores it."""
    data = {"completed_at": entry.at}
    await record_session_event(
        connection, EventType.SESSION_COMPLETED, session_id, at=entry.at, data=data
    )


def _late_key(session_id: SessionId, entry: AuditEntry) -> list[sa.ColumnElement[bool]]:
    return [
        late_answers.c.session_id == session_id,
        late_answers.c.question_index == entry.data["question_index"],
    ]


async def _count_late(
    connection: Connection, session_id: SessionId, entry: AuditEntry, *, sqlite: bool
) -> LateAnswerTally:
    """Count late answer ``entry`` in its question's tally; the tally before it."""
    text = str(entry.data["text"])
    last = {"last_at": entry.at, "last_chars": len(text)}
    insert = (sqlite_dialect.insert if sqlite else postgresql.insert)(late_answers)
    statement = (
        insert.values(
            session_id=session_id,
            question_index=entry.data["question_index"],
            received=1,
            received_chars=len(text),
            kept=0,
            kept_chars=0,
            last_sha256=text_digest(text),
            **last,
        )
        .on_conflict_do_update(
            index_elements=list(late_answers.primary_key),
            set_={
                "received": late_answers.c.received + 1,
                "received_chars": late_answers.c.received_chars + len(text),
                "last_sha256": insert.excluded.last_sha256,
                **last,
            },
        )
        .returning(
            late_answers.c.received, late_answers.c.kept, late_answers.c.kept_chars
        )
    )
    row = await connection.fetch_one(statement)
    assert row is not None, "an upsert returns its row"
    return LateAnswerTally(
        received=row["received"] - 1, kept=row["kept"], kept_chars=row["kept_chars"]
    )


async def _keep_late(
    connection: Connection, session_id: SessionId, entry: AuditEntry
) -> None:
    chars = len(str(entry.data["text"]))
    await connection.execute(
        late_answers.update()
        .where(*_late_key(session_id, entry))
        .values(
            kept=late_answers.c.kept + 1, kept_chars=late_answers.c.kept_chars + chars
        )
    )


def audit_page(
    session_id: SessionId, after: int | None, limit: int
) -> sa.Select[tuple[object, ...]]:
    """Up to ``limit`` entries of the attempt's log after entry ``after``, oldest
    first; one more is read to tell whether a next page exists."""
    query = audit_log.select().where(audit_log.c.session_id == session_id)
    if after is not None:
        query = query.where(audit_log.c.id > after)
    return query.order_by(audit_log.c.id).limit(limit + 1)


def late_answers_of(session_id: SessionId) -> sa.Select[tuple[object, ...]]:
    return (
        late_answers.select()
        .where(late_answers.c.session_id == session_id)
        .order_by(late_answers.c.question_index)
    )
