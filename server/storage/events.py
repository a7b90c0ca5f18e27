"""The interview event log: stored with the change, numbered after it, read in order.

Writers call :func:`append` inside the transaction that makes the change the events
report (the stores of attempts and of grades do), so an event exists exactly when its
change does. It is stored without a cursor: a counter that every write of an
interview had to hold until its commit made those writes commit one at a time (acks
on PostgreSQL went from ms to seconds under load). After the commit the writer asks
for its interviews to be numbered (:meth:`EventLog.number`, via ``Database.announce``
and the bus's announcer): a short transaction takes the interview's
``event_cursors`` row, gives the events not numbered yet the next cursors and
commits. Numbering transactions of one interview run one at a time, each giving a
contiguous block, so a reader that sees cursor n sees every cursor before it: cursors
strictly increase and a replay never skips one, however many instances and workers
write at once. Events a crashed process left unnumbered are numbered by the next
numbering of their interview, or by ``serve``'s periodic sweep
(:meth:`EventLog.unnumbered`).

Retention (:meth:`EventLog.prune`) keeps at most ``max_count`` events per interview
and none older than ``max_age_ms``; ``event_cursors.pruned`` remembers the last
cursor removed, which is what :func:`protocol.events.recoverable` needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record
from sqlalchemy.dialects import postgresql, sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import ARRAY

from protocol.events import Event, EventKind, News
from protocol.ids import InterviewId, Millis, SessionId
from server.storage.database import Database, translated
from server.storage.tables import (
    audit_json,
    audit_log,
    event_cursors,
    interview_events,
    sessions,
)

PAGE = 200
"""Events per read when replaying."""


@dataclass(frozen=True, slots=True)
class WatchedAttempt:
    """What a monitor's snapshot shows of one attempt, as stored."""

    session_id: SessionId
    candidate_id: str
    candidate_name: str
    status: str
    question_index: int
    question_count: int
    question_started_at: Millis
    final_score: float | None
    max_score: float | None
    recommendation: str | None
    flags: frozenset[str]


FLAG_KINDS = ("signal", "late_answer", "taken_over")
"""Audit kinds that flag an attempt (a signal flags it with its own kind)."""


@dataclass(frozen=True, slots=True)
class Head:
    """Where an interview's log stands: its last cursor and the last one removed."""

    last: int = 0
    pruned: int = 0


async def append(
    connection: Connection,
    news: Sequence[tuple[InterviewId, News]],
    *,
    sqlite: bool,
) -> list[InterviewId]:
    """Store ``news`` (of one or more interviews), not numbered yet, in
    ``connection``'s transaction; the interviews to number once it commits."""
    rows = [_row(interview_id, item) for interview_id, item in news]
    if sqlite or len(rows) == 1:
        # One row per statement: a single-row INSERT has one shape, compiled once.
        for row in rows:
            await connection.execute(interview_events.insert().values(row))
    elif rows:
        await connection.execute(_insert_many(rows))
    return sorted({interview_id for interview_id, _ in news})


def _row(interview_id: InterviewId, news: News) -> dict[str, object]:
    return {
        "interview_id": interview_id,
        "session_id": news.session_id,
        "kind": news.kind.value,
        "at": news.at,
        "data": audit_json(news.data),
    }


def _array(name: str, values: Sequence[object], item: Any) -> sa.ColumnElement[Any]:
    return sa.cast(sa.bindparam(name, list(values), type_=ARRAY(item)), ARRAY(item))


def _insert_many(rows: Sequence[dict[str, object]]) -> sa.Insert:
    """One INSERT of many events for PostgreSQL, its rows as arrays: one statement
    shape whatever their number (compiled and prepared once)."""
    columns = ("interview_id", "session_id", "kind", "at", "data")
    types: dict[str, Any] = {
        "interview_id": sa.Text(),
        "session_id": sa.Text(),
        "kind": sa.Text(),
        "at": sa.BigInteger(),
        "data": sa.Text(),
    }
    table = (
        sa.func.unnest(
            *(
                _array(f"event_{name}", [row[name] for row in rows], types[name])
                for name in columns
            )
        )
        .table_valued(*columns)
        .render_derived()
    )
    source = sa.select(*(table.c[name] for name in columns))
    return interview_events.insert().from_select(list(columns), source)


def _numbered(ids: Sequence[int], cursors: Sequence[int]) -> sa.UpdateBase:
    """Give events ``ids`` their ``cursors`` in one statement (PostgreSQL)."""
    given = (
        sa.func.unnest(
            _array("number_ids", ids, sa.BigInteger()),
            _array("number_cursors", cursors, sa.BigInteger()),
        )
        .table_valued("id", "cursor")
        .render_derived()
    )
    return (
        interview_events.update()
        .where(interview_events.c.id == given.c.id)
        .values(cursor=given.c.cursor)
    )


NUMBER_BATCH = 1000
"""The most events one numbering transaction gives cursors to, per interview."""


async def _number(
    connection: Connection, interview_id: InterviewId, *, sqlite: bool
) -> list[Event]:
    insert = (sqlite_dialect.insert if sqlite else postgresql.insert)(event_cursors)
    await connection.execute(
        insert.values(
            interview_id=interview_id, last=0, pruned=0
        ).on_conflict_do_nothing(index_elements=[event_cursors.c.interview_id])
    )
    # Held (PostgreSQL) until this transaction commits: numberings of one interview
    # take turns, each giving the next contiguous block.
    last = int(
        await connection.fetch_val(
            sa.select(event_cursors.c.last)
            .where(event_cursors.c.interview_id == interview_id)
            .with_for_update()
        )
    )
    rows = await connection.fetch_all(
        interview_events.select()
        .where(
            interview_events.c.interview_id == interview_id,
            interview_events.c.cursor.is_(None),
        )
        .order_by(interview_events.c.id)
        .limit(NUMBER_BATCH)
    )
    if not rows:
        return []
    ids = [int(row["id"]) for row in rows]
    cursors = list(range(last + 1, last + 1 + len(rows)))
    if sqlite:
        for event_id, cursor in zip(ids, cursors, strict=True):
            await connection.execute(
                interview_events.update()
                .where(interview_events.c.id == event_id)
                .values(cursor=cursor)
            )
    else:
        await connection.execute(_numbered(ids, cursors))
    await connection.execute(
        event_cursors.update()
        .where(event_cursors.c.interview_id == interview_id)
        .values(last=cursors[-1])
    )
    return [_event(row, cursor) for row, cursor in zip(rows, cursors, strict=True)]


def _event(row: Record, cursor: int) -> Event:
    return Event(
        interview_id=InterviewId(row["interview_id"]),
        cursor=cursor,
        session_id=SessionId(row["session_id"]),
        kind=EventKind(row["kind"]),
        at=Millis(row["at"]),
        data=json.loads(row["data"]),
    )


def event_from(row: Record) -> Event:
    return _event(row, int(row["cursor"]))


class EventLog:
    """Reads and retention of the event log, on the shared database handle."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @translated
    async def number(self, interview_ids: Sequence[InterviewId]) -> list[Event]:
        """Give the events of ``interview_ids`` not numbered yet their cursors, in
        one transaction (the interviews in id order, so two never wait in a cycle);
        the events numbered, in cursor order per interview."""
        numbered: list[Event] = []
        sqlite = self.database.is_sqlite
        async with self.database.transaction() as connection:
            for interview_id in sorted(set(interview_ids)):
                numbered += await _number(connection, interview_id, sqlite=sqlite)
        return numbered

    @translated
    async def unnumbered(self, limit: int = 100) -> list[InterviewId]:
        """Interviews with events not numbered yet (a writer died before it asked)."""
        rows = await self.database.fetch_all(
            sa.select(interview_events.c.interview_id)
            .where(interview_events.c.cursor.is_(None))
            .distinct()
            .limit(limit)
        )
        return [InterviewId(row["interview_id"]) for row in rows]

    @translated
    async def head(self, interview_id: InterviewId) -> Head:
        row = await self.database.fetch_one(
            sa.select(event_cursors.c.last, event_cursors.c.pruned).where(
                event_cursors.c.interview_id == interview_id
            )
        )
        return Head() if row is None else Head(int(row["last"]), int(row["pruned"]))

    @translated
    async def attempts(self, interview_id: InterviewId) -> list[WatchedAttempt]:
        """Every attempt of the interview, oldest first, with its flags."""
        rows = await self.database.fetch_all(
            sa.select(sessions)
            .where(sessions.c.interview_id == interview_id)
            .order_by(sessions.c.started_at, sessions.c.id)
        )
        flagged = await self.database.fetch_all(
            sa.select(audit_log.c.session_id, audit_log.c.kind, audit_log.c.data)
            .select_from(audit_log.join(sessions))
            .where(
                sessions.c.interview_id == interview_id,
                audit_log.c.kind.in_(FLAG_KINDS),
            )
        )
        flags: dict[str, set[str]] = {}
        for row in flagged:
            kind = row["kind"]
            if kind == "signal":
                kind = str(json.loads(row["data"]).get("signal", "signal"))
            flags.setdefault(row["session_id"], set()).add(kind)
        return [
            WatchedAttempt(
                session_id=SessionId(row["id"]),
                candidate_id=row["candidate_id"],
                candidate_name=row["candidate_name"],
                status=row["status"],
                question_index=row["question_index"],
                question_count=row["question_count"],
                question_started_at=row["question_started_at"],
                final_score=row["final_score"],
                max_score=row["max_score"],
                recommendation=row["recommendation"],
                flags=frozenset(flags.get(row["id"], ())),
            )
            for row in rows
        ]

    @translated
    async def after(
        self, interview_id: InterviewId, cursor: int, limit: int = PAGE
    ) -> list[Event]:
        """Up to ``limit`` events after ``cursor``, in cursor order."""
        query = (
            interview_events.select()
            .where(
                interview_events.c.interview_id == interview_id,
                interview_events.c.cursor > cursor,
            )
            .order_by(interview_events.c.cursor)
            .limit(limit)
        )
        return [event_from(row) for row in await self.database.fetch_all(query)]

    @translated
    async def prune(self, now: Millis, *, max_age_ms: int, max_count: int) -> int:
        """Remove what retention no longer keeps; how many events were removed."""
        removed = 0
        heads = await self.database.fetch_all(
            sa.select(event_cursors).where(
                event_cursors.c.last > event_cursors.c.pruned
            )
        )
        for head in heads:
            interview_id = head["interview_id"]
            floor = max(int(head["pruned"]), int(head["last"]) - max_count)
            too_old = await self.database.fetch_val(
                sa.select(sa.func.max(interview_events.c.cursor)).where(
                    interview_events.c.interview_id == interview_id,
                    interview_events.c.at < now - max_age_ms,
                )
            )
            floor = max(floor, int(too_old or 0))
            if floor <= int(head["pruned"]):
                continue
            async with self.database.transaction() as connection:
                await connection.execute(
                    event_cursors.update()
                    .where(
                        event_cursors.c.interview_id == interview_id,
                        event_cursors.c.pruned < floor,
                    )
                    .values(pruned=floor)
                )
                removed += await _delete_through(connection, interview_id, floor)
        return removed


async def _delete_through(
    connection: Connection, interview_id: InterviewId, floor: int
) -> int:
    statement = (
        interview_events.delete()
        .where(
            interview_events.c.interview_id == interview_id,
            interview_events.c.cursor <= floor,
        )
        .returning(interview_events.c.cursor)
    )
    return len(await connection.fetch_all(statement))
