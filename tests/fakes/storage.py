"""An in-memory :class:`server.storage.attempts.Storage` with the database's rules.

:class:`FakeStorage` keeps what the tables keep (an attempt's progress, its answers,
its drafts, its fence, its audit log, interviews and invitations) and applies the same
guards as :class:`~server.storage.attempts.DatabaseStorage`: a change of an attempt
applies only while it is in progress at the question it was decided from, and, with
a fence, while nobody claimed it since (:class:`Conflict` otherwise); a second attempt
in progress of one candidate is :class:`AlreadyInProgress`; each write is all or
nothing. tests/unit/fakes/test_storage.py holds it to the cases of
tests/integration/test_storage.py.

Faults are injected per method: :meth:`FakeStorage.fail` makes the next calls raise
(:class:`Unavailable` unless told otherwise), :meth:`FakeStorage.interleave` runs
another writer's change just before the next call (so that its guard really fails),
and :meth:`FakeStorage.hold` parks the next call until the test releases it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from protocol.attempt import Answer, Attempt, Change, Draft, Status
from protocol.audit import AuditEntry
from protocol.definition import InterviewDefinition
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.errors import (
    AlreadyInProgress,
    Conflict,
    QuotaExceeded,
    ServerError,
    Unavailable,
)
from server.storage.quota import Quota
from server.storage.records import InterviewRecord, Invitee

Method = Literal[
    "connect",
    "disconnect",
    "ping",
    "create_interview",
    "get_interview",
    "list_interviews",
    "invite",
    "is_invited",
    "archived_at",
    "count_attempts",
    "active_attempt",
    "load_attempt",
    "create_attempt",
    "claim",
    "attach",
    "owner_epoch",
    "commit",
    "save_draft",
    "append_audit",
    "audit_log",
    "due_attempts",
]
Write = Callable[[], Awaitable[object]]


def unavailable() -> Unavailable:
    return Unavailable("injected: the database does not answer")


@dataclass(slots=True)
class Gate:
    """A parked call: ``entered`` is set when it arrives, it goes on at
    :meth:`release`."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(slots=True)
class _Session:
    """One row of ``sessions`` with its answers and drafts."""

    attempt: Attempt  # the progress columns; answers and draft live below
    candidate_name: str
    owner_epoch: int = 0
    answers: dict[int, Answer] = field(default_factory=dict)
    drafts: dict[int, Draft] = field(default_factory=dict)
    claimed_at: dict[int, Millis] = field(default_factory=dict)

    def loaded(self) -> Attempt:
        attempt = self.attempt
        in_progress = attempt.status is Status.IN_PROGRESS
        return dataclasses.replace(
            attempt,
            answers=tuple(self.answers[index] for index in sorted(self.answers)),
            draft=self.drafts.get(attempt.question_index) if in_progress else None,
        )

    @property
    def expires_at(self) -> Millis | None:
        return self.attempt.closes_at if self.attempt.in_progress else None


def _progress(stored: Attempt, after: Attempt) -> Attempt:
    """``stored`` with the columns that change as an attempt advances."""
    return dataclasses.replace(
        stored,
        status=after.status,
        question_index=after.question_index,
        question_started_at=after.question_started_at,
        completed_at=after.completed_at,
        answers=(),
        draft=None,
    )


class FakeStorage:
    """:class:`server.storage.attempts.Storage` in memory; see the module docstring."""

    def __init__(self) -> None:
        self.connected = False
        self.interviews: dict[InterviewId, InterviewRecord] = {}
        self.invitations: dict[tuple[InterviewId, UserId], Invitee] = {}
        self.archived: dict[InterviewId, Millis] = {}
        """When interviews were archived (by the recruiters API; tests set it)."""
        self.sessions: dict[SessionId, _Session] = {}
        self.audit: dict[SessionId, list[AuditEntry]] = {}
        self.calls: Counter[Method] = Counter()
        self._failures: dict[Method, deque[Exception]] = {}
        self._interleaved: dict[Method, deque[Write]] = {}
        self._gates: dict[Method, deque[Gate]] = {}

    # -- faults ---------------------------------------------------------------------

    def fail(
        self, method: Method, error: Exception | None = None, *, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (default:
        :class:`Unavailable`) and change nothing."""
        errors = self._failures.setdefault(method, deque())
        errors.extend(error or unavailable() for _ in range(times))

    def interleave(self, method: Method, write: Write) -> None:
        """Run ``write`` (another writer's change) just before the next call of
        ``method`` is applied, as if that writer got there first."""
        self._interleaved.setdefault(method, deque()).append(write)

    def hold(self, method: Method) -> Gate:
        """Park the next call of ``method`` until the returned gate is released."""
        gate = Gate()
        self._gates.setdefault(method, deque()).append(gate)
        return gate

    async def _enter(self, method: Method) -> None:
        self.calls[method] += 1
        gates = self._gates.get(method)
        if gates:
            gate = gates.popleft()
            gate.entered.set()
            await gate.released.wait()
        writes = self._interleaved.get(method)
        if writes:
            await writes.popleft()()
        errors = self._failures.get(method)
        if errors:
            raise errors.popleft()

    # -- the port -------------------------------------------------------------------

    async def connect(self) -> None:
        await self._enter("connect")
        self.connected = True

    async def disconnect(self) -> None:
        await self._enter("disconnect")
        self.connected = False

    async def ping(self) -> None:
        await self._enter("ping")

    async def create_interview(
        self,
        *,
        org: str,
        created_by: UserId,
        definition: InterviewDefinition,
        now: Millis,
        quota: Quota | None = None,
    ) -> InterviewRecord:
        await self._enter("create_interview")
        held = sum(record.org == org for record in self.interviews.values())
        if quota is not None and held >= quota.interviews:
            # The database also counts definition bytes; no test of the fake needs it.
            message = f"{org} holds {held} interviews, the most it may"
            raise QuotaExceeded(message, limit="interviews")
        record = InterviewRecord(
            InterviewId(uuid.uuid4().hex), org, created_by, now, definition
        )
        self.interviews[record.id] = record
        return record

    async def get_interview(self, interview_id: InterviewId) -> InterviewRecord | None:
        await self._enter("get_interview")
        return self.interviews.get(interview_id)

    async def list_interviews(self, org: str) -> list[InterviewRecord]:
        await self._enter("list_interviews")
        mine = [record for record in self.interviews.values() if record.org == org]
        return sorted(mine, key=lambda record: (record.created_at, record.id))

    async def invite(
        self, interview_id: InterviewId, invitees: Sequence[Invitee], now: Millis
    ) -> None:
        await self._enter("invite")
        if invitees and interview_id not in self.interviews:
            raise ServerError("integrity: invitations.interview_id is a foreign key")
        for invitee in invitees:
            self.invitations[interview_id, invitee.id] = invitee

    async def is_invited(self, interview_id: InterviewId, candidate_id: UserId) -> bool:
        await self._enter("is_invited")
        return (interview_id, candidate_id) in self.invitations

    async def archived_at(self, interview_id: InterviewId) -> Millis | None:
        await self._enter("archived_at")
        return self.archived.get(interview_id)

    async def count_attempts(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> int:
        await self._enter("count_attempts")
        return sum(
            1
            for row in self.sessions.values()
            if row.attempt.interview_id == interview_id
            and row.attempt.candidate_id == candidate_id
        )

    async def active_attempt(self, candidate_id: UserId) -> Attempt | None:
        await self._enter("active_attempt")
        for row in self.sessions.values():
            attempt = row.attempt
            if attempt.candidate_id == candidate_id and attempt.in_progress:
                return row.loaded()
        return None

    async def load_attempt(self, session_id: SessionId) -> Attempt | None:
        await self._enter("load_attempt")
        row = self.sessions.get(session_id)
        return None if row is None else row.loaded()

    async def create_attempt(
        self,
        attempt: Attempt,
        *,
        candidate_name: str,
        audit: Sequence[AuditEntry],
        abandon: Attempt | None = None,
    ) -> None:
        await self._enter("create_attempt")
        if attempt.interview_id not in self.interviews:
            raise ServerError("integrity: sessions.interview_id is a foreign key")
        if abandon is not None:
            self._guard(abandon.session_id, abandon.question_index, None)
        self._refuse_duplicate(attempt, abandoned=abandon)
        # Every check passed: the transaction applies as a whole.
        if abandon is not None:
            row = self.sessions[abandon.session_id]
            abandoned = dataclasses.replace(row.attempt, status=Status.ABANDONED)
            row.attempt = abandoned
        stored = dataclasses.replace(attempt, answers=(), draft=None)
        self.sessions[attempt.session_id] = _Session(stored, candidate_name)
        self.audit[attempt.session_id] = list(audit)

    def _refuse_duplicate(self, attempt: Attempt, *, abandoned: Attempt | None) -> None:
        gone = abandoned.session_id if abandoned is not None else None
        for session_id, row in self.sessions.items():
            other = row.attempt
            mine = other.candidate_id == attempt.candidate_id
            if mine and other.in_progress and session_id != gone:
                message = f"{attempt.candidate_id} has an attempt in progress"
                raise AlreadyInProgress(message)
        for session_id, row in self.sessions.items():
            other = row.attempt
            same_number = (other.interview_id, other.candidate_id, other.number) == (
                attempt.interview_id,
                attempt.candidate_id,
                attempt.number,
            )
            if same_number or session_id == attempt.session_id:
                message = f"attempt {attempt.number} of {attempt.candidate_id} exists"
                raise Conflict(message)

    async def claim(self, session_id: SessionId) -> int:
        await self._enter("claim")
        row = self.sessions.get(session_id)
        if row is None:
            raise Conflict(f"no attempt {session_id}")
        row.owner_epoch += 1
        return row.owner_epoch

    async def attach(self, attempt: Attempt, entry: AuditEntry) -> int:
        await self._enter("attach")
        row = self.sessions.get(attempt.session_id)
        if row is None:
            raise Conflict(f"no attempt {attempt.session_id}")
        row.owner_epoch += 1
        self.audit[attempt.session_id].append(entry)
        return row.owner_epoch

    async def owner_epoch(self, session_id: SessionId) -> int | None:
        await self._enter("owner_epoch")
        row = self.sessions.get(session_id)
        return None if row is None else row.owner_epoch

    async def commit(
        self,
        change: Change,
        *,
        fence: int | None,
        audit: Sequence[AuditEntry],
        now: Millis | None = None,
    ) -> None:
        await self._enter("commit")
        before = change.before
        row = self._guard(before.session_id, before.question_index, fence)
        for answer in change.answers:
            if answer.question_index in row.answers:
                raise ServerError("integrity: uq_answers_question")
        row.attempt = _progress(row.attempt, change.after)
        for answer in change.answers:
            index = answer.question_index
            row.answers[index] = answer
            row.claimed_at[index] = answer.submitted_at if now is None else now
            if answer.had_draft:
                row.drafts.pop(index, None)
        self.audit[before.session_id].extend(audit)

    async def save_draft(
        self, session_id: SessionId, draft: Draft, *, fence: int | None
    ) -> None:
        await self._enter("save_draft")
        row = self._guard(session_id, draft.question_index, fence)
        row.drafts[draft.question_index] = draft

    async def append_audit(
        self,
        session_id: SessionId,
        entries: Sequence[AuditEntry],
        *,
        interview_id: InterviewId | None = None,
    ) -> None:
        await self._enter("append_audit")
        if not entries:
            return
        if session_id not in self.sessions:
            raise ServerError("integrity: audit_log.session_id is a foreign key")
        self.audit[session_id].extend(entries)

    async def audit_log(self, session_id: SessionId) -> list[AuditEntry]:
        await self._enter("audit_log")
        return list(self.audit.get(session_id, ()))

    async def due_attempts(self, now: Millis, limit: int) -> list[SessionId]:
        await self._enter("due_attempts")
        due = [
            (expires_at, session_id)
            for session_id, row in self.sessions.items()
            if (expires_at := row.expires_at) is not None and expires_at < now
        ]
        return [session_id for _, session_id in sorted(due)[:limit]]

    # -- the guard --------------------------------------------------------------------

    def _guard(
        self, session_id: SessionId, question_index: int, fence: int | None
    ) -> _Session:
        """The row, if still in progress at ``question_index`` (and ``fence``)."""
        row = self.sessions.get(session_id)
        if (
            row is None
            or not row.attempt.in_progress
            or row.attempt.question_index != question_index
            or (fence is not None and row.owner_epoch != fence)
        ):
            raise Conflict(f"attempt {session_id} changed: reload it")
        return row
