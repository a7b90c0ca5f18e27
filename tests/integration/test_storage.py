"""DatabaseStorage on a real database: SQLite, or PostgreSQL with DATABASE_URL."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from protocol.attempt import (
    Attempt,
    Change,
    Draft,
    Status,
    abandon,
    begin,
    change_between,
    expire_due,
    submit,
)
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import InterviewDefinition
from protocol.ids import InterviewId, SessionId, UserId
from server.errors import AlreadyInProgress, Conflict, ServerError, Unavailable
from server.storage.attempts import (
    DatabaseStorage,
    InterviewRecord,
    Invitee,
    Storage,
    migrate,
)
from server.storage.database import Database
from server.storage.migrations import alembic_url
from server.storage.tables import metadata

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000
STARTED = AuditEntry(at=NOW, actor="candidate:ada", kind=AuditKind.STARTED)


def fresh(prefix: str) -> UserId:
    return UserId(f"{prefix}-{uuid.uuid4().hex[:8]}")


def new_attempt(
    record: InterviewRecord, candidate: UserId, *, number: int = 1, now: int = NOW
) -> Attempt:
    return begin(
        session_id=SessionId(uuid.uuid4().hex),
        interview_id=record.id,
        title=record.title,
        candidate_id=candidate,
        number=number,
        questions=record.questions,
        grace_ms=record.settings.grace_ms,
        now=now,
    )


async def started(storage: Storage, record: InterviewRecord) -> Attempt:
    attempt = new_attempt(record, fresh("ada"))
    await storage.create_attempt(attempt, candidate_name="Ada", audit=[STARTED])
    return attempt


def answered(attempt: Attempt, text: str, *, after_ms: int = 1_000) -> Change:
    submission = submit(
        attempt, attempt.question_index, text, attempt.question_started_at + after_ms
    )
    return change_between(attempt, submission.attempt)


def _parameters(method: object) -> list[tuple[str, object, object]]:
    parameters = inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in parameters]


def test_database_storage_satisfies_the_storage_protocol() -> None:
    storage: Storage = DatabaseStorage(Database("sqlite:///unused.db"))  # mypy checks
    methods = [name for name in vars(Storage) if not name.startswith("_")]

    assert "commit" in methods
    for name in methods:
        ours = getattr(storage, name)
        assert inspect.iscoroutinefunction(ours), name
        assert _parameters(ours) == _parameters(getattr(Storage, name))[1:], name


async def test_migrate_twice_is_a_no_op(
    storage: DatabaseStorage, interview: InterviewRecord, database_url: str
) -> None:
    async def revisions() -> list[str]:
        query = "SELECT version_num FROM alembic_version"
        return [row[0] for row in await storage.database.fetch_all(query)]

    before = await revisions()

    await migrate(database_url)
    await migrate(database_url)

    assert len(before) == 1
    assert await revisions() == before
    reopened = DatabaseStorage(Database(database_url))
    await reopened.connect()
    try:
        assert await reopened.get_interview(interview.id) == interview  # data kept
    finally:
        await reopened.disconnect()


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_tables_the_code_queries(
    database_url: str,
) -> None:
    engine = create_async_engine(alembic_url(database_url), poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_schema_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_unreachable_database_is_unavailable() -> None:
    storage = DatabaseStorage(Database("postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(Unavailable):
        await storage.connect()


async def test_sqlite_file_in_a_missing_folder_is_unavailable() -> None:
    storage = DatabaseStorage(
        Database(f"sqlite:////nonexistent-{uuid.uuid4().hex}/x.db")
    )
    with pytest.raises(Unavailable):
        await storage.connect()


async def test_ping_answers_when_connected(storage: DatabaseStorage) -> None:
    await storage.ping()


async def test_created_interview_round_trips_with_its_keys(
    storage: DatabaseStorage, definition: InterviewDefinition, database_url: str
) -> None:
    record = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=NOW
    )
    reopened = DatabaseStorage(
        Database(database_url)
    )  # no cache: read from the database
    await reopened.connect()
    try:
        loaded = await reopened.get_interview(record.id)
        listed = await reopened.list_interviews("acme")
        elsewhere = await reopened.list_interviews("other")
    finally:
        await reopened.disconnect()
    assert loaded == record
    assert loaded.definition == definition
    assert listed == [record]
    assert elsewhere == []


async def test_unknown_interview_is_none(storage: DatabaseStorage) -> None:
    assert await storage.get_interview(InterviewId("missing")) is None


async def test_interviews_are_listed_oldest_first(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> None:
    newer = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=NOW + 1
    )
    older = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=NOW
    )
    assert await storage.list_interviews("acme") == [older, newer]


async def test_inviting_again_is_idempotent(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    ada, alan = fresh("ada"), fresh("alan")
    invitees = [Invitee(ada, "Ada", "ada@example.com"), Invitee(alan, "Alan", None)]
    await storage.invite(interview.id, invitees, NOW)
    await storage.invite(interview.id, [*invitees, invitees[0]], NOW + 1)
    await storage.invite(interview.id, [], NOW + 2)
    assert await storage.is_invited(interview.id, ada)
    assert await storage.is_invited(interview.id, alan)
    assert not await storage.is_invited(interview.id, fresh("nobody"))


async def test_created_attempt_loads_equal(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    assert await storage.load_attempt(attempt.session_id) == attempt
    assert await storage.active_attempt(attempt.candidate_id) == attempt
    assert await storage.count_attempts(interview.id, attempt.candidate_id) == 1
    assert await storage.audit_log(attempt.session_id) == [STARTED]


async def test_unknown_attempt_is_none(storage: DatabaseStorage) -> None:
    assert await storage.load_attempt(SessionId("missing")) is None
    assert await storage.active_attempt(UserId("nobody")) is None


async def test_second_attempt_in_progress_is_refused_at_any_interview(
    storage: DatabaseStorage,
    interview: InterviewRecord,
    definition: InterviewDefinition,
) -> None:
    first = await started(storage, interview)
    other = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=NOW
    )
    for record, number in ((interview, 2), (other, 1)):
        second = new_attempt(record, first.candidate_id, number=number)
        with pytest.raises(AlreadyInProgress):
            await storage.create_attempt(second, candidate_name="Ada", audit=[STARTED])
    assert await storage.active_attempt(first.candidate_id) == first


async def test_attempt_number_taken_is_a_conflict(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    done = await _complete(storage, first)
    again = new_attempt(interview, done.candidate_id, number=1)
    with pytest.raises(Conflict):
        await storage.create_attempt(again, candidate_name="Ada", audit=[])


async def _complete(storage: Storage, attempt: Attempt) -> Attempt:
    while attempt.in_progress:
        change = answered(attempt, "an answer")
        await storage.commit(change, fence=None, audit=[])
        attempt = change.after
    return attempt


async def test_commit_advances_once_from_the_same_state(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    accepted = AuditEntry(NOW + 1_000, "candidate:ada", AuditKind.ANSWER_ACCEPTED)
    await storage.commit(answered(attempt, "b"), fence=None, audit=[accepted])
    after = answered(attempt, "b").after

    with pytest.raises(Conflict):
        await storage.commit(answered(attempt, "a"), fence=None, audit=[accepted])

    assert await storage.load_attempt(attempt.session_id) == after
    assert await storage.audit_log(attempt.session_id) == [STARTED, accepted]


async def test_completing_the_last_question_ends_the_attempt(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    done = await _complete(storage, attempt)
    assert done.status is Status.COMPLETED
    assert await storage.load_attempt(attempt.session_id) == done
    assert await storage.active_attempt(attempt.candidate_id) is None
    assert await storage.due_attempts(NOW + 10**9, 10) == []


async def test_stale_fence_is_a_conflict(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    first = await storage.claim(attempt.session_id)
    second = await storage.claim(attempt.session_id)
    assert second == first + 1

    with pytest.raises(Conflict):
        await storage.commit(answered(attempt, "b"), fence=first, audit=[])
    with pytest.raises(Conflict):
        await storage.save_draft(attempt.session_id, Draft(0, "x", NOW), fence=first)
    assert await storage.load_attempt(attempt.session_id) == attempt

    await storage.commit(answered(attempt, "b"), fence=second, audit=[])


async def test_claiming_an_unknown_attempt_is_a_conflict(
    storage: DatabaseStorage,
) -> None:
    with pytest.raises(Conflict):
        await storage.claim(SessionId("missing"))


async def test_the_owner_epoch_is_that_of_the_last_claim(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    before = await storage.owner_epoch(attempt.session_id)

    first = await storage.claim(attempt.session_id)
    second = await storage.claim(attempt.session_id)

    assert before == 0
    assert (first, second) == (1, 2)
    assert await storage.owner_epoch(attempt.session_id) == second
    assert await storage.owner_epoch(SessionId("nope")) is None


async def test_latest_draft_of_the_current_question_is_restored(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    await storage.save_draft(attempt.session_id, Draft(0, "first", NOW + 1), fence=None)
    latest = Draft(0, "second", NOW + 2)
    await storage.save_draft(attempt.session_id, latest, fence=None)

    with pytest.raises(Conflict):
        await storage.save_draft(attempt.session_id, Draft(1, "x", NOW), fence=None)

    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded == dataclasses.replace(attempt, draft=latest)
    change = answered(loaded, "b")
    await storage.commit(change, fence=None, audit=[])
    assert await storage.load_attempt(attempt.session_id) == change.after


async def test_expiry_records_several_answers_in_one_commit(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    draft = Draft(0, "b", NOW + 5)
    await storage.save_draft(attempt.session_id, draft, fence=None)
    with_draft = dataclasses.replace(attempt, draft=draft)
    # Question 0 closes at +31.5 s, question 1 at +93 s: both expire by +100 s.
    after, expired = expire_due(with_draft, NOW + 100_000)
    assert len(expired) == 2

    await storage.commit(change_between(with_draft, after), fence=None, audit=[])

    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded == after
    assert loaded.answers[0].had_draft and loaded.answers[0].time_expired


async def test_due_attempts_are_the_overdue_ones_oldest_first(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    late = new_attempt(interview, fresh("late"), now=NOW)
    later = new_attempt(interview, fresh("later"), now=NOW + 10_000)
    on_time = new_attempt(interview, fresh("on-time"), now=NOW + 60_000)
    for attempt in (on_time, later, late):
        await storage.create_attempt(attempt, candidate_name="C", audit=[])

    # Question 0: 30 s plus 1.5 s of grace.
    due = await storage.due_attempts(NOW + 50_000, 10)

    assert due == [late.session_id, later.session_id]
    assert await storage.due_attempts(NOW + 50_000, 1) == [late.session_id]
    assert await storage.due_attempts(NOW + 31_500, 10) == []


async def test_start_over_keeps_the_old_attempt_as_abandoned(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    second = new_attempt(interview, first.candidate_id, number=2, now=NOW + 5)

    await storage.create_attempt(
        second, candidate_name="Ada", audit=[STARTED], abandon=first
    )

    assert await storage.load_attempt(first.session_id) == abandon(first)
    assert await storage.active_attempt(first.candidate_id) == second
    assert await storage.count_attempts(interview.id, first.candidate_id) == 2


async def test_start_over_from_a_changed_attempt_is_a_conflict(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    await storage.commit(answered(first, "b"), fence=None, audit=[])
    second = new_attempt(interview, first.candidate_id, number=2)

    with pytest.raises(Conflict):
        await storage.create_attempt(
            second, candidate_name="Ada", audit=[], abandon=first
        )
    assert await storage.count_attempts(interview.id, first.candidate_id) == 1


async def test_audit_log_keeps_each_entry_and_its_data(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    entries = [
        AuditEntry(NOW + 1, "server", AuditKind.ATTACHED, {"epoch": 1}),
        AuditEntry(
            NOW + 2,
            "candidate:ada",
            AuditKind.LATE_ANSWER,
            {"question_index": 0, "text": "late ✓", "nested": {"a": [1, None]}},
        ),
    ]
    await storage.append_audit(attempt.session_id, entries)
    await storage.append_audit(attempt.session_id, [])
    assert await storage.audit_log(attempt.session_id) == [STARTED, *entries]


async def test_concurrent_commits_from_the_same_state_apply_once(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    changes = [answered(attempt, f"answer {n}", after_ms=n) for n in range(1, 21)]

    results = await asyncio.gather(
        *(storage.commit(change, fence=None, audit=[]) for change in changes),
        return_exceptions=True,
    )

    winners = [
        change
        for change, result in zip(changes, results, strict=True)
        if result is None
    ]
    assert len(winners) == 1
    assert all(isinstance(result, Conflict) for result in results if result)
    assert await storage.load_attempt(attempt.session_id) == winners[0].after


async def test_concurrent_starts_of_one_candidate_create_one_attempt(
    storage: DatabaseStorage, interview: InterviewRecord
) -> None:
    candidate = fresh("ada")
    attempts = [new_attempt(interview, candidate, number=n) for n in range(1, 11)]

    results = await asyncio.gather(
        *(storage.create_attempt(a, candidate_name="Ada", audit=[]) for a in attempts),
        return_exceptions=True,
    )

    assert sum(result is None for result in results) == 1
    assert all(isinstance(result, AlreadyInProgress) for result in results if result)
    assert await storage.count_attempts(interview.id, candidate) == 1


async def test_two_instances_on_one_database_apply_a_change_once(
    storage: DatabaseStorage, interview: InterviewRecord, database_url: str
) -> None:
    attempt = await started(storage, interview)
    other = DatabaseStorage(Database(database_url))
    await other.connect()
    changes = [answered(attempt, f"answer {n}", after_ms=n) for n in range(1, 21)]
    try:
        results = await asyncio.gather(
            *(
                (storage if n % 2 else other).commit(change, fence=None, audit=[])
                for n, change in enumerate(changes)
            ),
            return_exceptions=True,
        )
    finally:
        await other.disconnect()

    assert sum(result is None for result in results) == 1
    assert all(isinstance(result, Conflict) for result in results if result)


async def test_inviting_to_an_unknown_interview_is_a_storage_error(
    storage: DatabaseStorage,
) -> None:
    with pytest.raises(ServerError, match="integrity"):
        await storage.invite(
            InterviewId("missing"), [Invitee(fresh("a"), "A", None)], NOW
        )


async def test_instances_opening_a_fresh_sqlite_file_together_all_connect(
    tmp_path: Path,
) -> None:
    for round_ in range(10):
        url = f"sqlite:///{tmp_path}/fresh-{round_}.db"
        await migrate(url)
        pair = [DatabaseStorage(Database(url)) for _ in range(3)]
        await asyncio.gather(*(storage.connect() for storage in pair))
        try:
            mode = await pair[0].database.fetch_val("PRAGMA journal_mode")
            assert str(mode).lower() == "wal"
        finally:
            for storage in pair:
                await storage.disconnect()
