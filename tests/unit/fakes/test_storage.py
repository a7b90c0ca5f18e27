"""The in-memory storage keeps the database's rules (tests/fakes/storage.py).

The cases are those of tests/integration/test_storage.py, which hold
``DatabaseStorage`` to the same rules on SQLite and PostgreSQL; then its faults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid

import pytest

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
from protocol.definition import parse_definition
from protocol.ids import InterviewId, SessionId, UserId
from server.errors import AlreadyInProgress, Conflict, ServerError, Unavailable
from server.storage.attempts import Storage
from server.storage.records import InterviewRecord, Invitee
from tests.e2e._client import UNIT_S
from tests.fakes.storage import FakeStorage

NOW = 1_800_000_000_000
STARTED = AuditEntry(at=NOW, actor="candidate:ada", kind=AuditKind.STARTED)


@pytest.fixture
async def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
async def interview(storage: FakeStorage) -> InterviewRecord:
    definition = parse_definition(
        {
            "title": "Fake",
            "settings": {"max_attempts": 3, "grace_s": 1.5},
            "questions": [
                {"type": "short_answer", "text": "a", "points": 1, "time_limit_s": 30},
                {"type": "short_answer", "text": "b", "points": 1, "time_limit_s": 60},
            ],
        }
    )
    return await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=NOW
    )


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


def test_the_fake_satisfies_the_storage_protocol() -> None:
    storage: Storage = FakeStorage()  # mypy checks it structurally
    methods = [name for name in vars(Storage) if not name.startswith("_")]

    assert "commit" in methods
    for name in methods:
        ours = getattr(storage, name)
        assert inspect.iscoroutinefunction(ours), name
        assert _parameters(ours) == _parameters(getattr(Storage, name))[1:], name


async def test_interviews_and_invitations(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    ada = fresh("ada")
    await storage.invite(interview.id, [Invitee(ada, "Ada", None)], NOW)
    await storage.invite(interview.id, [Invitee(ada, "Ada L.", None)], NOW + 1)

    assert await storage.get_interview(interview.id) == interview
    assert await storage.get_interview(InterviewId("missing")) is None
    assert await storage.list_interviews("acme") == [interview]
    assert await storage.list_interviews("other") == []
    assert await storage.is_invited(interview.id, ada)
    assert not await storage.is_invited(interview.id, fresh("nobody"))
    with pytest.raises(ServerError, match="integrity"):
        await storage.invite(InterviewId("missing"), [Invitee(ada, "A", None)], NOW)


async def test_created_attempt_loads_equal(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)

    assert await storage.load_attempt(attempt.session_id) == attempt
    assert await storage.active_attempt(attempt.candidate_id) == attempt
    assert await storage.count_attempts(interview.id, attempt.candidate_id) == 1
    assert await storage.audit_log(attempt.session_id) == [STARTED]
    assert await storage.load_attempt(SessionId("missing")) is None


async def test_second_attempt_in_progress_is_refused(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)

    with pytest.raises(AlreadyInProgress):
        await storage.create_attempt(
            new_attempt(interview, first.candidate_id, number=2),
            candidate_name="Ada",
            audit=[],
        )
    assert await storage.count_attempts(interview.id, first.candidate_id) == 1


async def test_attempt_number_taken_is_a_conflict(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    attempt = first
    while attempt.in_progress:
        change = answered(attempt, "x")
        await storage.commit(change, fence=None, audit=[])
        attempt = change.after

    with pytest.raises(Conflict):
        again = new_attempt(interview, first.candidate_id, number=1)
        await storage.create_attempt(again, candidate_name="Ada", audit=[])
    assert await storage.load_attempt(first.session_id) == attempt
    assert await storage.active_attempt(first.candidate_id) is None


async def test_commit_advances_once_from_the_same_state(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    accepted = AuditEntry(NOW + 1_000, "candidate:ada", AuditKind.ANSWER_ACCEPTED)
    await storage.commit(answered(attempt, "b"), fence=None, audit=[accepted])

    with pytest.raises(Conflict):
        await storage.commit(answered(attempt, "a"), fence=None, audit=[accepted])

    assert (
        await storage.load_attempt(attempt.session_id) == answered(attempt, "b").after
    )
    assert await storage.audit_log(attempt.session_id) == [STARTED, accepted]


async def test_stale_fence_is_a_conflict(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    first = await storage.claim(attempt.session_id)
    second = await storage.claim(attempt.session_id)
    assert second == first + 1

    with pytest.raises(Conflict):
        await storage.commit(answered(attempt, "b"), fence=first, audit=[])
    with pytest.raises(Conflict):
        await storage.save_draft(attempt.session_id, Draft(0, "x", NOW), fence=first)
    with pytest.raises(Conflict):
        await storage.claim(SessionId("missing"))
    assert await storage.load_attempt(attempt.session_id) == attempt

    await storage.commit(answered(attempt, "b"), fence=second, audit=[])


async def test_latest_draft_of_the_current_question_is_restored(
    storage: FakeStorage, interview: InterviewRecord
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
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    draft = Draft(0, "b", NOW + 5)
    await storage.save_draft(attempt.session_id, draft, fence=None)
    with_draft = dataclasses.replace(attempt, draft=draft)
    after, expired = expire_due(with_draft, NOW + 100_000)
    assert len(expired) == 2

    await storage.commit(change_between(with_draft, after), fence=None, audit=[])

    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded == after
    assert loaded.answers[0].had_draft and loaded.answers[0].time_expired


async def test_due_attempts_are_the_overdue_ones_oldest_first(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    late = new_attempt(interview, fresh("late"), now=NOW)
    later = new_attempt(interview, fresh("later"), now=NOW + 10_000)
    on_time = new_attempt(interview, fresh("on-time"), now=NOW + 60_000)
    for attempt in (on_time, later, late):
        await storage.create_attempt(attempt, candidate_name="C", audit=[])

    assert await storage.due_attempts(NOW + 50_000, 10) == [
        late.session_id,
        later.session_id,
    ]
    assert await storage.due_attempts(NOW + 50_000, 1) == [late.session_id]
    assert await storage.due_attempts(NOW + 31_500, 10) == []


async def test_start_over_keeps_the_old_attempt_as_abandoned(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    second = new_attempt(interview, first.candidate_id, number=2, now=NOW + 5)

    await storage.create_attempt(
        second, candidate_name="Ada", audit=[STARTED], abandon=first
    )

    assert await storage.load_attempt(first.session_id) == abandon(first)
    assert await storage.active_attempt(first.candidate_id) == second
    assert await storage.due_attempts(NOW + 10**9, 10) == [second.session_id]


async def test_start_over_from_a_changed_attempt_is_a_conflict(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    first = await started(storage, interview)
    await storage.commit(answered(first, "b"), fence=None, audit=[])
    second = new_attempt(interview, first.candidate_id, number=2)

    with pytest.raises(Conflict):
        await storage.create_attempt(
            second, candidate_name="Ada", audit=[], abandon=first
        )
    assert await storage.count_attempts(interview.id, first.candidate_id) == 1
    loaded = await storage.load_attempt(first.session_id)
    assert loaded is not None and loaded.status is Status.IN_PROGRESS


async def test_audit_log_keeps_each_entry(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    entry = AuditEntry(NOW + 1, "server", AuditKind.ATTACHED, {"epoch": 1})

    await storage.append_audit(attempt.session_id, [entry])
    await storage.append_audit(attempt.session_id, [])

    assert await storage.audit_log(attempt.session_id) == [STARTED, entry]
    with pytest.raises(ServerError, match="integrity"):
        await storage.append_audit(SessionId("missing"), [entry])


# -- faults ----------------------------------------------------------------------------


async def test_a_failed_call_raises_unavailable_and_changes_nothing(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    storage.fail("commit", times=2)

    for _ in range(2):
        with pytest.raises(Unavailable):
            await storage.commit(answered(attempt, "b"), fence=None, audit=[])
    await storage.commit(answered(attempt, "b"), fence=None, audit=[])

    assert storage.calls["commit"] == 3
    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded is not None and len(loaded.answers) == 1


async def test_an_interleaved_writer_makes_the_guard_fail(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)

    async def other_writer() -> None:
        await storage.commit(answered(attempt, "first"), fence=None, audit=[])

    storage.interleave("commit", other_writer)

    with pytest.raises(Conflict):
        await storage.commit(answered(attempt, "second"), fence=None, audit=[])
    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded is not None and loaded.answers[0].text == "first"


async def test_a_held_call_waits_for_its_release(
    storage: FakeStorage, interview: InterviewRecord
) -> None:
    attempt = await started(storage, interview)
    gate = storage.hold("commit")
    committing = asyncio.create_task(
        storage.commit(answered(attempt, "b"), fence=None, audit=[])
    )
    async with asyncio.timeout(UNIT_S):
        await gate.entered.wait()

    assert await storage.load_attempt(attempt.session_id) == attempt
    gate.release()
    async with asyncio.timeout(UNIT_S):
        await committing
    loaded = await storage.load_attempt(attempt.session_id)
    assert loaded is not None and loaded.question_index == 1
