"""The interview event log: numbered, stored with the change, read back in order.

Writers call :func:`append` inside the transaction that makes the change the events
report (the stores of attempts and of grades do), so an event exists exactly when its
change does. The cursor of each event comes from the interview's ``event_cursors``
row, counted up by the transaction's last statement; on PostgreSQL that row stays
locked until the transaction ends, so the events of one interview commit in cursor
order (SQLite has one writer at a time). Hence a reader that sees cursor n sees every
cursor before it: cursors strictly increase and a replay never skips one, however
many instances and workers write at once. Several interviews in one transaction are
counted in the order of their ids, so two transactions never wait on each other in a
cycle.

Retention (:meth:`EventLog.prune`) keeps at most ``max_count`` events per interview
and none older than ``max_age_ms``; ``event_cursors.pruned`` remembers the last
cursor removed, which is what :func:`protocol.events.recoverable` needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
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
) -> list[Event]:
    """Number and store ``news`` (of one or more interviews) in ``connection``'s
    transaction; the events, in order. Call it last in the transaction: the cursor
    rows it counts up stay locked until the end."""
    events: list[Event] = []
    by_interview = sorted(enumerate(news), key=lambda item: (item[1][0], item[0]))
    for interview_id, group in groupby(by_interview, key=lambda item: item[1][0]):
        items = [item for _, (_, item) in group]
        last = await _count(connection, interview_id, len(items), sqlite=sqlite)
        first = last - len(items) + 1
        events += [
            Event(interview_id, first + i, n.session_id, n.kind, n.at, n.data)
            for i, n in enumerate(items)
        ]
    if sqlite or len(events) == 1:
        # One row per statement: a single-row INSERT has one shape, compiled once.
        for event in events:
            await connection.execute(interview_events.insert().values(_row(event)))
    elif events:
        await connection.execute(_insert_many(events))
    return sorted(events, key=lambda event: (event.interview_id, event.cursor))


async def _count(
    connection: Connection, interview_id: InterviewId, n: int, *, sqlite: bool
) -> int:
    insert = (sqlite_dialect.insert if sqlite else postgresql.insert)(event_cursors)
    statement = (
        insert.values(interview_id=interview_id, last=n, pruned=0)
        .on_conflict_do_update(
            index_elements=[event_cursors.c.interview_id],
            set_={"last": event_cursors.c.last + n},
        )
        .returning(event_cursors.c.last)
    )
    last = await connection.fetch_val(statement)
    return int(last)


def _row(event: Event) -> dict[str, object]:
    return {
        "interview_id": event.interview_id,
        "cursor": event.cursor,
        "session_id": event.session_id,
        "kind": event.kind.value,
        "at": event.at,
        "data": audit_json(event.data),
    }


def _array(name: str, values: Sequence[object], item: Any) -> sa.ColumnElement[Any]:
    return sa.cast(sa.bindparam(name, list(values), type_=ARRAY(item)), ARRAY(item))


def _insert_many(events: Sequence[Event]) -> sa.Insert:
    """One INSERT of many events for PostgreSQL, its rows as arrays: one statement
    shape whatever their number (compiled and prepared once)."""
    rows = [_row(event) for event in events]
    columns = ("interview_id", "cursor", "session_id", "kind", "at", "data")
    types: dict[str, Any] = {
        "interview_id": sa.Text(),
        "cursor": sa.BigInteger(),
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


def event_from(row: Record) -> Event:
    return Event(
        interview_id=InterviewId(row["interview_id"]),
        cursor=int(row["cursor"]),
        session_id=SessionId(row["session_id"]),
        kind=EventKind(row["kind"]),
        at=Millis(row["at"]),
        data=json.loads(row["data"]),
    )


class EventLog:
    """Reads and retention of the event log, on the shared database handle."""

    def __init__(self, database: Database) -> None:
        self.database = database

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
