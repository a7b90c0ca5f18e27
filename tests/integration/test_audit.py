"""The audit log on a real database (server/storage/_audit.py): late answers within
their budget per question, data stored unescaped; SQLite, or PostgreSQL with
DATABASE_URL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from protocol.attempt import Attempt, begin, change_between, submit
from protocol.audit import (
    AuditEntry,
    AuditKind,
    LateAnswerBudget,
    late_answer,
    text_digest,
)
from protocol.ids import SessionId, UserId
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.database import Database
from server.storage.tables import audit_log, late_answers

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000
LONGEST = 100_000
"""The longest answer (``MAX_ANSWER_CHARS``' default)."""


async def started(storage: DatabaseStorage, record: InterviewRecord) -> Attempt:
    attempt = begin(
        session_id=SessionId(uuid.uuid4().hex),
        interview_id=record.id,
        title=record.title,
        candidate_id=UserId(f"ada-{uuid.uuid4().hex[:8]}"),
        number=1,
        questions=record.questions,
        grace_ms=record.settings.grace_ms,
        now=NOW,
    )
    await storage.create_attempt(attempt, candidate_name="Ada", audit=[])
    return attempt


def late(question_index: int, text: str, at: int = NOW) -> AuditEntry:
    return late_answer("candidate:ada", at, question_index, text)


async def stored_bytes(storage: DatabaseStorage, session_id: SessionId) -> int:
    """The bytes of the attempt's audit ``data``, as the database stores them."""
    data = audit_log.c.data
    size = (
        sa.func.length(sa.cast(data, sa.LargeBinary))
        if storage.database.is_sqlite
        else sa.func.octet_length(data)
    )
    query = sa.select(sa.func.coalesce(sa.func.sum(size), 0)).where(
        audit_log.c.session_id == session_id
    )
    return int(await storage.database.fetch_val(query))


async def late_kinds(storage: DatabaseStorage, session_id: SessionId) -> list[object]:
    """What the log holds of each late answer: its text, or ``False`` (not kept)."""
    return [
        entry.data.get("text", entry.data.get("text_kept"))
        for entry in await storage.audit_log(session_id)
        if entry.kind is AuditKind.LATE_ANSWER
    ]


async def test_two_hundred_late_answers_to_one_question_store_two_texts(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    texts = [f"{n:03d}" + "x" * (LONGEST - 3) for n in range(200)]

    for n, text in enumerate(texts):
        await storage.append_audit(attempt.session_id, [late(0, text, NOW + n)])

    assert await late_kinds(storage, attempt.session_id) == [texts[0], texts[1], False]
    # Before: 200 rows holding all 20,000,000 characters.
    assert await stored_bytes(storage, attempt.session_id) < 2 * LONGEST + 1_000
    tally = await storage.database.fetch_one(
        late_answers.select().where(late_answers.c.session_id == attempt.session_id)
    )
    assert tally is not None
    assert (tally["received"], tally["kept"]) == (200, 2)
    assert tally["received_chars"] == 200 * LONGEST
    assert (tally["last_at"], tally["last_sha256"]) == (
        NOW + 199,
        text_digest(texts[-1]),
    )


async def test_each_question_has_its_own_late_answer_budget(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    big = "y" * (2 * LONGEST)

    await storage.append_audit(
        attempt.session_id, [late(0, big), late(0, "more"), late(1, "first")]
    )

    assert await late_kinds(storage, attempt.session_id) == [big, False, "first"]


async def test_the_budget_holds_across_stores_on_the_same_database(
    storage: DatabaseStorage, interview: InterviewRecord, database_url: str
) -> None:
    """A reconnect, or another instance, continues the question's tally."""
    attempt = await started(storage, interview)
    await storage.append_audit(attempt.session_id, [late(0, "a" * LONGEST)])
    other = DatabaseStorage(Database(database_url), late_answers=LateAnswerBudget())
    await other.connect()
    try:
        for text in ["b" * LONGEST, "c" * LONGEST, "d"]:
            await other.append_audit(attempt.session_id, [late(0, text)])
    finally:
        await other.disconnect()

    kept = await late_kinds(storage, attempt.session_id)
    assert kept == ["a" * LONGEST, "b" * LONGEST, False]


async def test_a_late_answer_committed_with_its_expiry_counts_against_the_budget(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    closes = attempt.closes_at + 1
    overdue = submit(attempt, 0, "z" * LONGEST, closes)
    change = change_between(attempt, overdue.attempt)
    first = late(0, "z" * LONGEST, closes)
    await storage.commit(change, fence=None, audit=[first], now=closes)

    for _ in range(3):
        await storage.append_audit(attempt.session_id, [late(0, "z" * LONGEST)])

    assert await late_kinds(storage, attempt.session_id) == [
        "z" * LONGEST,
        "z" * LONGEST,
        False,
    ]


async def test_a_non_ascii_late_answer_is_stored_unescaped(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    text = "日本語のこたえ" * 142 + "ü" * 6  # 1,000 characters

    await storage.append_audit(attempt.session_id, [late(0, text)])

    query = sa.select(sa.func.length(audit_log.c.data)).where(
        audit_log.c.session_id == attempt.session_id
    )
    assert await storage.database.fetch_val(query) < 1_050  # escaped: 6,000+
    assert await stored_bytes(storage, attempt.session_id) < 3 * 1_000 + 50
    assert await late_kinds(storage, attempt.session_id) == [text]


async def test_a_late_answer_with_a_lone_surrogate_is_kept_escaped(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    text = "half a pair: \ud83d, é"

    await storage.append_audit(attempt.session_id, [late(0, text)])

    assert await late_kinds(storage, attempt.session_id) == [text]
