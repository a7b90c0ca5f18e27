"""Races between writers of one attempt, both sides run concurrently many times.

Two :class:`DatabaseStorage` objects on one database stand in for two instances
(SQLite by default, PostgreSQL with DATABASE_URL). The database guard (question index
and the ``owner_epoch`` fence, docs/design.md "Time and truth") must settle every race
the same way, whoever gets there first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from protocol.attempt import Attempt, Verdict, begin, change_between, submit
from protocol.audit import AuditKind
from protocol.ids import Millis, SessionId, UserId
from server.candidate.sweeper import MARGIN_MS, SWEEPER, Sweeper, settle
from server.cluster.bus import InProcessBus
from server.errors import Conflict
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.database import Database

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000
ROUNDS = 20


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[DatabaseStorage]:
    """A second instance's storage on the same database."""
    second = DatabaseStorage(Database(database_url))
    await second.connect()
    try:
        yield second
    finally:
        await second.disconnect()


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


async def answer(
    storage: DatabaseStorage,
    attempt: Attempt,
    text: str,
    now: Millis,
) -> Verdict:
    """As the socket shell does: decide, write; on Conflict reload, decide again."""
    current: Attempt | None = attempt
    while current is not None:
        submission = submit(current, attempt.question_index, text, now)
        if submission.verdict is not Verdict.ACCEPTED:
            return submission.verdict
        change = change_between(current, submission.attempt)
        try:
            await storage.commit(change, fence=None, audit=[])
        except Conflict:
            current = await storage.load_attempt(attempt.session_id)
            continue
        return Verdict.ACCEPTED
    raise AssertionError("the attempt vanished")


def sweeper(storage: DatabaseStorage, at: Millis, bus: InProcessBus) -> Sweeper:
    return Sweeper(storage, bus, lambda: at)


async def expired_indexes(
    storage: DatabaseStorage, session_id: SessionId
) -> list[object]:
    return [
        entry.data["question_index"]
        for entry in await storage.audit_log(session_id)
        if entry.kind is AuditKind.EXPIRED
    ]


async def test_an_answer_in_time_is_never_expired_by_a_sweeper_within_its_margin(
    storage: DatabaseStorage, other: DatabaseStorage, interview: InterviewRecord
) -> None:
    for _ in range(ROUNDS):
        attempt = await started(storage, interview)
        closes_at = attempt.closes_at
        late_sweeper = sweeper(other, closes_at + MARGIN_MS, InProcessBus())

        verdict, _ = await asyncio.gather(
            answer(storage, attempt, "b", closes_at), late_sweeper.sweep_once()
        )

        assert verdict is Verdict.ACCEPTED
        stored = await storage.load_attempt(attempt.session_id)
        assert stored is not None
        assert stored.answers[0].text == "b"
        assert not stored.answers[0].time_expired
        assert await expired_indexes(storage, attempt.session_id) == []


async def test_an_answer_racing_an_expiry_is_settled_by_exactly_one_of_them(
    storage: DatabaseStorage, other: DatabaseStorage, interview: InterviewRecord
) -> None:
    outcomes: list[Verdict] = []
    for round_ in range(ROUNDS):
        attempt = await started(storage, interview)
        closes_at = attempt.closes_at
        # A write delayed past the margin: the sweeper may now get there first.
        sides = [
            answer(storage, attempt, "b", closes_at),
            settle(other, InProcessBus(), attempt, closes_at + 1),
        ]
        if round_ % 2:  # either side may start first
            sides.reverse()

        results = await asyncio.gather(*sides)

        verdict = next(r for r in results if isinstance(r, Verdict))
        stored = await storage.load_attempt(attempt.session_id)
        assert stored is not None and stored.question_index == 1
        first = stored.answers[0]
        expired = await expired_indexes(storage, attempt.session_id)
        if verdict is Verdict.ACCEPTED:
            assert (first.text, first.time_expired, expired) == ("b", False, [])
        else:  # the loser's reload showed the sweeper's result
            assert verdict is Verdict.TOO_LATE
            assert (first.time_expired, expired) == (True, [0])
        outcomes.append(verdict)
    assert set(outcomes) <= {Verdict.ACCEPTED, Verdict.TOO_LATE}


async def test_two_instances_sweeping_one_overdue_attempt_expire_it_once(
    storage: DatabaseStorage, other: DatabaseStorage, interview: InterviewRecord
) -> None:
    for _ in range(ROUNDS):
        attempt = await started(storage, interview)
        long_after = NOW + 3_600_000
        bus = InProcessBus()
        commits: list[str] = []
        bus.subscribe(attempt.session_id, commits.append)

        await asyncio.gather(
            sweeper(storage, long_after, bus).sweep_once(),
            sweeper(other, long_after, bus).sweep_once(),
        )

        stored = await storage.load_attempt(attempt.session_id)
        assert stored is not None and not stored.in_progress
        assert commits == [SWEEPER]
        indexes = list(range(attempt.question_count))
        assert await expired_indexes(storage, attempt.session_id) == indexes
        assert [a.question_index for a in stored.answers] == indexes


async def test_two_tabs_on_two_instances_only_the_newer_fence_commits(
    storage: DatabaseStorage, other: DatabaseStorage, interview: InterviewRecord
) -> None:
    for _ in range(ROUNDS):
        attempt = await started(storage, interview)
        fences = await asyncio.gather(
            storage.claim(attempt.session_id), other.claim(attempt.session_id)
        )
        newer = max(range(2), key=lambda n: fences[n])
        tabs = [storage, other]
        now = NOW + 1_000

        results = await asyncio.gather(
            *(
                tabs[n].commit(
                    change_between(
                        attempt, submit(attempt, 0, f"tab {n}", now).attempt
                    ),
                    fence=fences[n],
                    audit=[],
                )
                for n in range(2)
            ),
            return_exceptions=True,
        )

        assert abs(fences[0] - fences[1]) == 1
        assert results[newer] is None
        assert isinstance(results[1 - newer], Conflict)
        stored = await storage.load_attempt(attempt.session_id)
        assert stored is not None and stored.answers[0].text == f"tab {newer}"


async def test_a_retried_answer_whose_ack_was_lost_is_stored_once_as_duplicate(
    storage: DatabaseStorage, other: DatabaseStorage, interview: InterviewRecord
) -> None:
    for _ in range(ROUNDS):
        attempt = await started(storage, interview)
        now = NOW + 1_000

        # The first send (instance A) and its retry (instance B, after reconnecting)
        # were both decided from the same state.
        verdicts = await asyncio.gather(
            answer(storage, attempt, "b", now), answer(other, attempt, "b", now + 5)
        )

        assert sorted(verdicts) == sorted([Verdict.ACCEPTED, Verdict.DUPLICATE])
        stored = await storage.load_attempt(attempt.session_id)
        assert stored is not None
        assert [(a.question_index, a.text) for a in stored.answers] == [(0, "b")]
