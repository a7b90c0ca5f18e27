"""What recruiters list and change besides grades (issue 11): interviews page by page,
archiving, invitations with their state, revoking, the sessions list with filters and
sorting, and the scores the statistics are computed from.

On the shared :class:`~server.storage.database.Database` handle, beside the attempt
store and the results store. Every list is a page of at most ``limit`` rows in a
stable order (the sort key, then the id) with the cursor of the next page
(:mod:`server.storage._cursor`), the same on SQLite and PostgreSQL.

An invitation's state comes from the candidate's latest attempt of the interview:
``invited`` (none yet), ``started`` (in progress; an abandoned attempt always has a
newer one), ``completed`` or ``evaluated``. An attempt's ``evaluation`` is
``needs_review`` when an answer needs a person, else ``evaluated`` when the attempt
is evaluated (or abandoned) and no answer waits for a grade, else ``pending``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from databases.interfaces import Record

from evaluators.grade import EvaluationStatus
from evaluators.statistics import AttemptScores
from protocol.attempt import Status
from protocol.ids import InterviewId, Millis, UserId
from server.storage import _cursor
from server.storage._cursor import Order
from server.storage._results_rows import SessionSummary, session_summary
from server.storage.database import Database, translated
from server.storage.records import InterviewRecord
from server.storage.tables import answers, interviews, invitations, sessions

__all__ = [
    "Catalogue",
    "Evaluation",
    "InterviewListing",
    "InterviewQuery",
    "InterviewSort",
    "InvitationQuery",
    "InvitationRecord",
    "InvitationState",
    "Order",
    "Page",
    "SessionListing",
    "SessionQuery",
    "SessionSort",
]

T = TypeVar("T")


class InterviewSort(enum.StrEnum):
    CREATED_AT = "created_at"
    TITLE = "title"


class SessionSort(enum.StrEnum):
    STARTED_AT = "started_at"
    SCORE = "score"
    CANDIDATE_NAME = "candidate_name"


class Evaluation(enum.StrEnum):
    PENDING = "pending"
    NEEDS_REVIEW = "needs_review"
    EVALUATED = "evaluated"


class InvitationState(enum.StrEnum):
    INVITED = "invited"
    STARTED = "started"
    COMPLETED = "completed"
    EVALUATED = "evaluated"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Rows of a list; ``next`` is the cursor of the following page, ``None`` after
    the last."""

    items: list[T]
    next: str | None


@dataclass(frozen=True, slots=True)
class InterviewQuery:
    archived: bool | None = None
    sort: InterviewSort = InterviewSort.CREATED_AT
    order: Order = Order.ASC
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    statuses: tuple[Status, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()
    recommendations: tuple[str, ...] = ()
    candidate: str | None = None
    sort: SessionSort = SessionSort.STARTED_AT
    order: Order = Order.ASC
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationQuery:
    states: tuple[InvitationState, ...] = ()
    revoked: bool | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class InterviewListing:
    record: InterviewRecord
    archived_at: Millis | None


@dataclass(frozen=True, slots=True)
class SessionListing:
    summary: SessionSummary
    evaluation: Evaluation


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    candidate_id: str
    name: str
    email: str | None
    invited_at: Millis
    revoked_at: Millis | None
    revoked_by: str | None
    state: InvitationState
    attempts: int
    latest_session_id: str | None


_NEEDS_REVIEW = sa.exists().where(
    answers.c.session_id == sessions.c.id,
    answers.c.evaluation_status == EvaluationStatus.NEEDS_REVIEW.value,
)
_PENDING = sa.exists().where(
    answers.c.session_id == sessions.c.id,
    answers.c.evaluation_status == EvaluationStatus.PENDING.value,
)
_SETTLED = (Status.EVALUATED.value, Status.ABANDONED.value)
EVALUATION = sa.case(
    (_NEEDS_REVIEW, Evaluation.NEEDS_REVIEW.value),
    (
        sa.and_(sessions.c.status.in_(_SETTLED), ~_PENDING),
        Evaluation.EVALUATED.value,
    ),
    else_=Evaluation.PENDING.value,
)
# Attempts without a score sort below every score (scores are never negative).
_SESSION_KEYS: dict[SessionSort, tuple[sa.ColumnElement[object], type]] = {
    SessionSort.STARTED_AT: (sessions.c.started_at, int),
    SessionSort.SCORE: (sa.func.coalesce(sessions.c.final_score, -1.0), float),
    SessionSort.CANDIDATE_NAME: (sessions.c.candidate_name, str),
}
_INTERVIEW_KEYS: dict[InterviewSort, tuple[sa.ColumnElement[object], type]] = {
    InterviewSort.CREATED_AT: (interviews.c.created_at, int),
    InterviewSort.TITLE: (interviews.c.title, str),
}


class Catalogue:
    """The recruiters' lists; every method may raise
    :class:`server.errors.Unavailable`, and a list given a cursor it did not make
    raises :class:`ValueError`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._interviews = database.interviews

    # -- interviews -------------------------------------------------------------------

    @translated
    async def interview_page(
        self, org: str, query: InterviewQuery
    ) -> Page[InterviewListing]:
        key, kind = _INTERVIEW_KEYS[query.sort]
        where: list[sa.ColumnElement[bool]] = [interviews.c.org == org]
        if query.archived is not None:
            archived = interviews.c.archived_at
            where.append(archived.isnot(None) if query.archived else archived.is_(None))
        if query.cursor is not None:
            last = _cursor.decode(query.cursor, query.sort, query.order, kind)
            where.append(_cursor.after(key, interviews.c.id, query.order, last))
        statement = (
            sa.select(interviews, key.label("sort_key"))
            .where(*where)
            .order_by(*_cursor.ordered(key, interviews.c.id, query.order))
            .limit(query.limit + 1)
        )
        rows = await self.database.fetch_all(statement)
        items = [
            InterviewListing(self._interviews.known(row), row["archived_at"])
            for row in rows[: query.limit]
        ]
        return Page(items, _next(rows, query.limit, query.sort, query.order))

    @translated
    async def set_archived(
        self, interview_id: InterviewId, now: Millis | None
    ) -> Millis | None:
        """Archive the interview as of ``now`` (kept if it already is), or unarchive
        it (``now`` ``None``); when it is archived now."""
        values = {"archived_at": now}
        where = [interviews.c.id == interview_id]
        if now is not None:
            where.append(interviews.c.archived_at.is_(None))  # the first time stays
        async with self.database.transaction() as connection:
            await connection.execute(interviews.update().where(*where).values(values))
            value = await connection.fetch_val(
                sa.select(interviews.c.archived_at).where(
                    interviews.c.id == interview_id
                )
            )
        return None if value is None else int(value)

    # -- invitations ------------------------------------------------------------------

    @translated
    async def invitation_page(
        self, interview_id: InterviewId, query: InvitationQuery
    ) -> Page[InvitationRecord]:
        state = _invitation_state(interview_id)
        where: list[sa.ColumnElement[bool]] = [
            invitations.c.interview_id == interview_id
        ]
        if query.states:
            where.append(state.c.state.in_([s.value for s in query.states]))
        if query.revoked is not None:
            revoked = invitations.c.revoked_at
            where.append(revoked.isnot(None) if query.revoked else revoked.is_(None))
        candidate = invitations.c.candidate_id
        if query.cursor is not None:
            last = _cursor.decode(query.cursor, "candidate_id", Order.ASC, str)
            where.append(candidate > last[1])
        statement = (
            _invitations_with(state)
            .where(*where)
            .order_by(candidate)
            .limit(query.limit + 1)
        )
        rows = await self.database.fetch_all(statement)
        items = [_invitation(row) for row in rows[: query.limit]]
        following = None
        if len(rows) > query.limit:
            last_id = items[-1].candidate_id
            following = _cursor.encode("candidate_id", Order.ASC, last_id, last_id)
        return Page(items, following)

    @translated
    async def invitation(
        self, interview_id: InterviewId, candidate_id: UserId
    ) -> InvitationRecord | None:
        state = _invitation_state(interview_id)
        row = await self.database.fetch_one(
            _invitations_with(state).where(
                invitations.c.interview_id == interview_id,
                invitations.c.candidate_id == candidate_id,
            )
        )
        return None if row is None else _invitation(row)

    @translated
    async def revoke(
        self, interview_id: InterviewId, candidate_id: UserId, *, by: str, now: Millis
    ) -> InvitationRecord | None:
        """Revoke the invitation (the first revocation's time and author stay); the
        invitation now, ``None`` when there is none."""
        statement = (
            invitations.update()
            .where(
                invitations.c.interview_id == interview_id,
                invitations.c.candidate_id == candidate_id,
                invitations.c.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoked_by=by)
        )
        async with self.database.transaction() as connection:
            await connection.execute(statement)
        return await self.invitation(interview_id, candidate_id)

    # -- sessions ---------------------------------------------------------------------

    @translated
    async def session_page(
        self, interview_id: InterviewId, query: SessionQuery
    ) -> Page[SessionListing]:
        key, kind = _SESSION_KEYS[query.sort]
        where = [sessions.c.interview_id == interview_id, *_session_filters(query)]
        if query.cursor is not None:
            last = _cursor.decode(query.cursor, query.sort, query.order, kind)
            where.append(_cursor.after(key, sessions.c.id, query.order, last))
        statement = (
            sa.select(sessions, EVALUATION.label("evaluation"), key.label("sort_key"))
            .where(*where)
            .order_by(*_cursor.ordered(key, sessions.c.id, query.order))
            .limit(query.limit + 1)
        )
        rows = await self.database.fetch_all(statement)
        items = [
            SessionListing(session_summary(row), Evaluation(row["evaluation"]))
            for row in rows[: query.limit]
        ]
        return Page(items, _next(rows, query.limit, query.sort, query.order))

    @translated
    async def graded_scores(self, interview_id: InterviewId) -> list[AttemptScores]:
        """Each evaluated attempt's effective scores, oldest first; an attempt with
        an answer that has no score (it needs review and nobody overrode it) is
        left out until a recruiter scores it."""
        override, score = answers.c.override_score, answers.c.score
        statement = (
            sa.select(
                sessions.c.id,
                sessions.c.candidate_id,
                sessions.c.number,
                sessions.c.question_count,
                answers.c.question_index,
                sa.func.coalesce(override, score).label("effective"),
            )
            .select_from(
                sessions.outerjoin(answers, answers.c.session_id == sessions.c.id)
            )
            .where(
                sessions.c.interview_id == interview_id,
                sessions.c.status == Status.EVALUATED.value,
            )
            .order_by(sessions.c.started_at, sessions.c.id, answers.c.question_index)
        )
        return _scores(await self.database.fetch_all(statement))


def _next(rows: Sequence[Record], limit: int, sort: str, order: Order) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return _cursor.encode(sort, order, last["sort_key"], last["id"])


def _session_filters(query: SessionQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if query.statuses:
        where.append(sessions.c.status.in_([s.value for s in query.statuses]))
    if query.evaluations:
        where.append(EVALUATION.in_([e.value for e in query.evaluations]))
    if query.recommendations:
        where.append(sessions.c.recommendation.in_(query.recommendations))
    if query.candidate is not None:
        where.append(sessions.c.candidate_id == query.candidate)
    return where


def _invitation_state(interview_id: InterviewId) -> sa.Subquery:
    """Per candidate of the interview: attempts made, and the latest one's id and
    state."""
    latest = (
        sa.select(
            sessions.c.candidate_id,
            sa.func.max(sessions.c.number).label("number"),
            sa.func.count().label("attempts"),
        )
        .where(sessions.c.interview_id == interview_id)
        .group_by(sessions.c.candidate_id)
        .subquery("latest")
    )
    state = sa.case(
        (sessions.c.status == Status.EVALUATED.value, InvitationState.EVALUATED.value),
        (sessions.c.status == Status.COMPLETED.value, InvitationState.COMPLETED.value),
        else_=InvitationState.STARTED.value,
    )
    return (
        sa.select(
            latest.c.candidate_id,
            latest.c.attempts,
            sessions.c.id.label("session_id"),
            state.label("state"),
        )
        .select_from(
            latest.join(
                sessions,
                sa.and_(
                    sessions.c.interview_id == interview_id,
                    sessions.c.candidate_id == latest.c.candidate_id,
                    sessions.c.number == latest.c.number,
                ),
            )
        )
        .subquery("attempted")
    )


def _invitations_with(state: sa.Subquery) -> sa.Select[tuple[object, ...]]:
    return sa.select(
        invitations,
        sa.func.coalesce(state.c.attempts, 0).label("attempts"),
        state.c.session_id.label("latest_session_id"),
        sa.func.coalesce(state.c.state, InvitationState.INVITED.value).label("state"),
    ).select_from(
        invitations.outerjoin(state, state.c.candidate_id == invitations.c.candidate_id)
    )


def _invitation(row: Record) -> InvitationRecord:
    return InvitationRecord(
        candidate_id=row["candidate_id"],
        name=row["name"],
        email=row["email"],
        invited_at=row["created_at"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        state=InvitationState(row["state"]),
        attempts=int(row["attempts"]),
        latest_session_id=row["latest_session_id"],
    )


def _scores(rows: Sequence[Record]) -> list[AttemptScores]:
    found: dict[str, tuple[str, int, dict[int, float | None]]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        _, _, scores = found.setdefault(
            row["id"], (row["candidate_id"], row["number"], {})
        )
        counts[row["id"]] = row["question_count"]
        if row["question_index"] is not None:
            scores[row["question_index"]] = row["effective"]
    attempts = []
    for session_id, (candidate, number, scores) in found.items():
        ordered = [scores.get(index) for index in range(counts[session_id])]
        graded = [float(score) for score in ordered if score is not None]
        if len(graded) == len(ordered):  # every question has a score
            attempts.append(AttemptScores(candidate, number, tuple(graded)))
    return attempts
