"""The interview event log on the real databases: cursors, commit order, retention."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from protocol.attempt import Attempt, begin, change_between, submit
from protocol.audit import AuditEntry, AuditKind
from protocol.events import Event, EventKind
from protocol.ids import SessionId, UserId
from server.errors import Conflict
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.database import Database
from server.storage.events import EventLog, Head
from tests.integration.conftest import CREATED_AT

NOW = CREATED_AT + 1_000


async def started(storage: DatabaseStorage, interview: InterviewRecord) -> Attempt:
    attempt = begin(
        session_id=SessionId(uuid.uuid4().hex),
        interview_id=interview.id,
        title=interview.title,
        candidate_id=UserId(f"c-{uuid.uuid4().hex[:8]}"),
        number=1,
        questions=interview.questions,
        grace_ms=interview.settings.grace_ms,
        now=NOW,
    )
    entry = AuditEntry(NOW, "candidate:x", AuditKind.STARTED, {"attempt": 1})
    await storage.create_attempt(attempt, candidate_name="X", audit=[entry])
    return attempt


def signal(at: int) -> AuditEntry:
    data = {"signal": "paste", "detail": None}
    return AuditEntry(at, "candidate:x", AuditKind.SIGNAL, data)


async def test_a_change_stores_its_events_with_it_and_announces_them(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    announced: list[Event] = []
    storage.database.on_events = announced.extend
    attempt = await started(storage, interview)
    after = submit(attempt, 0, "b", NOW + 500).attempt
    accepted = AuditEntry(
        NOW + 500,
        "candidate:x",
        AuditKind.ANSWER_ACCEPTED,
        {"question_index": 0, "time_taken_ms": 500},
    )
    await storage.commit(change_between(attempt, after), fence=None, audit=[accepted])

    log = await EventLog(storage.database).after(interview.id, 0)
    assert log == announced
    assert [(e.cursor, e.kind) for e in log] == [
        (1, EventKind.STARTED),
        (2, EventKind.QUESTION_STARTED),
        (3, EventKind.ANSWER_SUBMITTED),
        (4, EventKind.QUESTION_STARTED),
    ]
    assert log[3].data["question_index"] == 1
    assert log[3].data["deadline"] == after.deadline
    assert (await EventLog(storage.database).head(interview.id)).last == 4


async def test_a_write_that_fails_stores_no_event(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    after = submit(attempt, 0, "b", NOW + 500).attempt
    await storage.commit(change_between(attempt, after), fence=None, audit=[])
    head = (await EventLog(storage.database).head(interview.id)).last
    with pytest.raises(Conflict):  # the same change again: the guard refuses it
        await storage.commit(change_between(attempt, after), fence=None, audit=[])
    assert (await EventLog(storage.database).head(interview.id)).last == head


async def test_concurrent_writers_on_two_handles_never_show_a_reader_a_gap(
    database_url: str, storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    """Writers on two pools (two instances) append at once while a reader tails
    the log: every cursor is given once, and the reader never sees cursor n before
    every cursor below it (ids that commit out of order would)."""
    other = DatabaseStorage(Database(database_url))
    await other.connect()
    attempts = [await started(storage, interview) for _ in range(4)]
    log = EventLog(storage.database)
    start = (await log.head(interview.id)).last
    per_writer = 25
    done = asyncio.Event()
    seen: list[int] = []

    async def write(store: DatabaseStorage, attempt: Attempt) -> None:
        for i in range(per_writer):
            await store.append_audit(
                attempt.session_id, [signal(NOW + i)], interview_id=interview.id
            )

    async def tail() -> None:
        last = start
        while True:
            finished = done.is_set()
            for event in await log.after(interview.id, last):
                assert event.cursor == last + 1, (event.cursor, last)
                last = event.cursor
                seen.append(last)
            if finished:
                return
            await asyncio.sleep(0)

    try:
        reader = asyncio.create_task(tail())
        await asyncio.gather(
            *(
                write(storage if i % 2 else other, attempt)
                for i, attempt in enumerate(attempts)
            )
        )
        done.set()
        await reader
    finally:
        await other.disconnect()
    total = per_writer * len(attempts)
    assert seen == list(range(start + 1, start + 1 + total))


async def test_retention_keeps_the_newest_and_remembers_what_it_removed(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    for i in range(10):
        await storage.append_audit(attempt.session_id, [signal(NOW + i)])
    log = EventLog(storage.database)
    head = (await log.head(interview.id)).last

    removed = await log.prune(NOW + 100, max_age_ms=10**9, max_count=4)
    assert removed == head - 4
    assert await log.head(interview.id) == Head(last=head, pruned=head - 4)
    assert [e.cursor for e in await log.after(interview.id, 0)] == list(
        range(head - 3, head + 1)
    )
    # By age: everything before NOW + 8 goes, whatever the count.
    await log.prune(NOW + 8 + 1_000, max_age_ms=1_000, max_count=1_000)
    remaining = await log.after(interview.id, 0)
    assert all(event.at >= NOW + 8 for event in remaining)
    assert (await log.head(interview.id)).pruned == remaining[0].cursor - 1
    assert await log.prune(NOW, max_age_ms=10**9, max_count=1_000) == 0
