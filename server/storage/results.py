"""Grades, summaries and recruiters' corrections: the grading side of the database.

Beside :mod:`server.storage.attempts` (which owns attempts), on the same database
handle (:class:`server.storage.database.Database`). Every write is conditional on the
state it was decided from, so that jobs may run twice, late or together:

* a grade is stored only while its answer is ``pending``: a finished job run again
  changes nothing;
* the summary is claimed and written only while the attempt is ``completed``, has no
  summary and no pending answer: written exactly once, even when the last two grades
  finish together (PRODUCT.md 6.7);
* jobs are found again from the database: a pending answer whose job was never
  enqueued, was given back, whose lease (``enqueued_at``: set when the job is sent,
  renewed by the process grading it) ran out, or that is due for a retry
  (PRODUCT.md 6.5), and likewise a summary.

An override and a summary both begin by writing the session row, so on PostgreSQL
they take its lock in turn and the totals always include the latest override.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any, assert_never

import sqlalchemy as sa
from databases.core import Connection

from evaluators.grade import EvaluationStatus, Summary
from protocol.attempt import REEVALUABLE, Status
from protocol.audit import AuditKind
from protocol.events import (
    News,
    answer_evaluated,
    evaluated,
    score_overridden,
)
from protocol.ids import InterviewId, Millis, SessionId
from protocol.webhooks.events import EventType
from server.errors import NotFound
from server.storage import _results_sql as sql, events
from server.storage._audit import (
    AUDIT_PAGE,
    MAX_AUDIT_PAGE,
    audit_page,
    late_answers_of,
)
from server.storage._outbox import record_session_event
from server.storage._results_rows import (
    AnswerRecord,
    AuditLine,
    AuditPage,
    Graded,
    GradingJob,
    LateAnswers,
    NeedsReview,
    Outcome,
    RetryLater,
    SessionDetail,
    SessionSummary,
    SummaryJob,
    Totals,
    answer_record,
    audit_line,
    late_answers,
    question_result,
    session_summary,
)
from server.storage.database import Database, translated
from server.storage.records import InterviewRecord
from server.storage.tables import answers, sessions

__all__ = [
    "AUDIT_PAGE",
    "MAX_AUDIT_PAGE",
    "REEVALUATED",
    "SCORE_OVERRIDDEN",
    "AnswerRecord",
    "AuditLine",
    "AuditPage",
    "Graded",
    "GradingJob",
    "JobKey",
    "LateAnswers",
    "NeedsReview",
    "Outcome",
    "RetryLater",
    "ResultsStore",
    "SessionDetail",
    "SessionSummary",
    "SummaryJob",
    "Totals",
    "UnknownAnswer",
]

SCORE_OVERRIDDEN = AuditKind.SCORE_OVERRIDDEN
REEVALUATED = AuditKind.REEVALUATED
PENDING = EvaluationStatus.PENDING.value
# The audit kinds written here.
RENEW_CHUNK = 500
"""Keys per renewing statement (SQLite binds at most 32,766 parameters)."""


JobKey = tuple[SessionId, int]
"""An answer's grading job: its attempt and question index."""


class UnknownAnswer(NotFound):
    """No such attempt, or no answer to that question in it."""

    def __init__(self, session_id: SessionId, index: int) -> None:
        super().__init__(f"no answer to question {index}")
        self.session_id = session_id
        self.index = index


class ResultsStore:
    """Queries of grading; every method may raise :class:`server.errors.Unavailable`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._sqlite = database.is_sqlite
        self._interviews = database.interviews

    async def _interview(self, interview_id: InterviewId) -> InterviewRecord:
        cached = await self._interviews.get(interview_id)
        assert cached is not None, "sessions.interview_id is a foreign key"
        return cached[0]

    # -- finding and claiming jobs ----------------------------------------------------

    @translated
    async def due_answers(
        self, now: Millis, *, stale_ms: int | None, limit: int = 500
    ) -> list[tuple[SessionId, int]]:
        """Pending answers without a live job: never enqueued, given back, their
        lease older than ``stale_ms`` (``None``: none counts as old), or retry due."""
        query = (
            sa.select(answers.c.session_id, answers.c.question_index)
            .where(sql.answer_due(now, stale_ms))
            .order_by(answers.c.submitted_at, answers.c.id)
            .limit(limit)
        )
        rows = await self.database.fetch_all(query)
        return [(SessionId(row["session_id"]), row["question_index"]) for row in rows]

    @translated
    async def claim_jobs(
        self, keys: Sequence[JobKey], now: Millis, *, stale_ms: int | None
    ) -> list[JobKey]:
        """Claim these answers' jobs in one statement; the ones claimed (the rest
        are finished or have a live job)."""
        if not keys:
            return []
        statement = (
            answers.update()
            .where(
                sql.keys_match(keys, sqlite=self._sqlite),
                sql.answer_due(now, stale_ms),
            )
            .values(enqueued_at=now)
            .returning(answers.c.session_id, answers.c.question_index)
        )
        async with self.database.transaction() as connection:
            rows = await connection.fetch_all(statement)
        claimed = {(row[0], row[1]) for row in rows}
        return [key for key in dict.fromkeys(keys) if key in claimed]  # keys' order

    @translated
    async def release_jobs(self, keys: Sequence[JobKey]) -> None:
        """Give up the claim on jobs that could not be sent or run (the broker or
        the database failing), so that the next re-enqueue sends them instead of
        waiting for them to go stale."""
        if not keys:
            return
        statement = (
            answers.update()
            .where(
                sql.keys_match(keys, sqlite=self._sqlite),
                answers.c.evaluation_status == PENDING,
            )
            .values(enqueued_at=None)
        )
        async with self.database.transaction() as connection:
            await connection.execute(statement)

    @translated
    async def due_summaries(
        self, now: Millis, *, stale_ms: int | None, limit: int = 100
    ) -> list[SessionId]:
        """Attempts ready to summarise whose summary job is missing, stale or due."""
        query = (
            sa.select(sessions.c.id)
            .where(sql.summary_due(now, stale_ms))
            .order_by(sessions.c.completed_at, sessions.c.id)
            .limit(limit)
        )
        return [SessionId(row["id"]) for row in await self.database.fetch_all(query)]

    @translated
    async def ready_to_summarise(
        self, session_ids: Iterable[SessionId]
    ) -> list[SessionId]:
        """Which of these attempts are ready to summarise, in one read: most grades
        are not their attempt's last, and the claim below is a write transaction."""
        wanted = list(dict.fromkeys(session_ids))
        if not wanted:
            return []
        query = sa.select(sessions.c.id).where(
            sql.ids_match(sessions.c.id, wanted, sqlite=self._sqlite),
            *sql.READY_TO_SUMMARISE,
        )
        ready = {row["id"] for row in await self.database.fetch_all(query)}
        return [session_id for session_id in wanted if session_id in ready]

    @translated
    async def claim_summary(
        self, session_id: SessionId, now: Millis, *, stale_ms: int | None
    ) -> bool:
        """Whether the caller now owns summarising (of two grades finishing together,
        one claims it): the attempt is ready and no other summary job is live."""
        statement = (
            sessions.update()
            .where(sessions.c.id == session_id, sql.summary_due(now, stale_ms))
            .values(summary_enqueued_at=now)
            .returning(sessions.c.id)
        )
        async with self.database.transaction() as connection:
            return await connection.fetch_one(statement) is not None

    @translated
    async def renew(
        self, keys: Sequence[JobKey], summaries: Sequence[SessionId], now: Millis
    ) -> None:
        """Renew the leases of jobs being graded to ``now``, answers' and summaries',
        in one transaction (a finished job, or one waiting for a retry, is left)."""
        if not keys and not summaries:
            return
        keys, summaries = list(dict.fromkeys(keys)), list(dict.fromkeys(summaries))
        async with self.database.transaction() as connection:
            for start in range(0, len(keys), RENEW_CHUNK):
                chunk = keys[start : start + RENEW_CHUNK]
                await connection.execute(
                    sql.renew_answers(chunk, now, sqlite=self._sqlite)
                )
            for start in range(0, len(summaries), RENEW_CHUNK):
                ids = summaries[start : start + RENEW_CHUNK]
                await connection.execute(
                    sql.renew_summaries(ids, now, sqlite=self._sqlite)
                )

    # -- grading answers --------------------------------------------------------------

    @translated
    async def grading_jobs(
        self, keys: Sequence[JobKey], now: Millis
    ) -> list[GradingJob]:
        """The jobs of these answers that are still pending and not waiting for a
        retry, in one query (a finished job run again, or a copy of one whose try
        failed, finds nothing to do)."""
        if not keys:
            return []
        query = (
            sa.select(
                answers.c.session_id,
                answers.c.question_index,
                answers.c.text,
                answers.c.time_expired,
                answers.c.evaluation_status,
                answers.c.grading_attempts,
                answers.c.enqueued_at,
                sessions.c.interview_id,
            )
            .select_from(answers.join(sessions, sessions.c.id == answers.c.session_id))
            .where(
                sql.keys_match(keys, sqlite=self._sqlite),
                answers.c.evaluation_status == PENDING,
                sql.retry_not_waiting(answers.c.retry_at, now),
            )
        )
        jobs = []
        for row in await self.database.fetch_all(query):
            interview = await self._interview(row["interview_id"])  # cached
            index = row["question_index"]
            jobs.append(
                GradingJob(
                    session_id=SessionId(row["session_id"]),
                    interview_id=interview.id,
                    index=index,
                    question=interview.definition.questions[index],
                    answer=row["text"],
                    time_expired=bool(row["time_expired"]),
                    status=row["evaluation_status"],
                    attempts=row["grading_attempts"],
                    enqueued_at=row["enqueued_at"],
                )
            )
        return jobs

    @translated
    async def store_outcomes(
        self, outcomes: Sequence[tuple[JobKey, Outcome]], now: Millis
    ) -> list[bool]:
        """Store each outcome while its answer is pending, all in one transaction;
        for each, whether it was stored (a job that ran twice stores once)."""
        together = [] if self._sqlite else _grade_rows(outcomes)
        stored = [False] * len(outcomes)
        made: list[InterviewId] = []
        async with self.database.transaction() as connection:
            if together:
                rows = await connection.fetch_all(sql.store_grades(together, now))
                applied = {(row[0], row[1]) for row in rows}
                for position, (key, outcome) in enumerate(outcomes):
                    if isinstance(outcome, Graded) and key in applied:
                        stored[position] = True  # a key twice is stored once
                        applied.discard(key)
            for position, ((session_id, index), outcome) in enumerate(outcomes):
                if together and isinstance(outcome, Graded):
                    continue  # stored above
                statement = _outcome_statement(session_id, index, outcome, now)
                stored[position] = await connection.fetch_one(statement) is not None
            news = [
                _evaluated_news(key, outcome, now)
                for (key, outcome), applied in zip(outcomes, stored, strict=True)
                if applied and not isinstance(outcome, RetryLater)
            ]
            made = await self._record_events(connection, news)
        self.database.announce(made)
        return stored

    async def _record_events(
        self, connection: Connection, news: Sequence[News]
    ) -> list[InterviewId]:
        """Number and store ``news``, last in the transaction (storage/events.py)."""
        if not news:
            return []
        ids = sorted({item.session_id for item in news})
        rows = await connection.fetch_all(sql.interviews_of(ids, sqlite=self._sqlite))
        interview_of = {row["id"]: InterviewId(row["interview_id"]) for row in rows}
        pairs = [(interview_of[item.session_id], item) for item in news]
        return await events.append(connection, pairs, sqlite=self._sqlite)

    # -- the summary ------------------------------------------------------------------

    @translated
    async def summary_job(self, session_id: SessionId) -> SummaryJob | None:
        row = await self.database.fetch_one(sql.session(session_id))
        if row is None:
            return None
        interview = await self._interview(row["interview_id"])
        questions = interview.definition.questions
        rows = await self.database.fetch_all(sql.answers_of(session_id))
        return SummaryJob(
            session_id=session_id,
            interview_id=interview.id,
            title=interview.title,
            status=row["status"],
            has_summary=row["summary"] is not None,
            attempts=row["summary_attempts"],
            enqueued_at=row["summary_enqueued_at"],
            results=tuple(
                question_result(r, questions[r["question_index"]]) for r in rows
            ),
        )

    @translated
    async def store_summary(
        self, session_id: SessionId, summary: Summary, now: Millis
    ) -> Totals | None:
        """Write the summary once, ``completed`` -> ``evaluated``; the totals, or
        ``None`` when it did not apply (written already, or not ready).

        The totals are computed here from the answers, once the row is held.
        """
        statement = (
            sessions.update()
            .where(sessions.c.id == session_id, *sql.READY_TO_SUMMARISE)
            .values(
                status=Status.EVALUATED.value,
                summary=summary.text,
                recommendation=summary.recommendation.value,
                summary_model=summary.model,
                summary_prompt_version=summary.prompt_version,
                summary_raw=summary.raw,
                evaluated_at=now,
                summary_attempts=sessions.c.summary_attempts + 1,
            )
            .returning(sessions.c.interview_id)
        )
        async with self.database.transaction() as connection:
            row = await connection.fetch_one(statement)
            if row is None:
                return None
            interview = await self._interview(row["interview_id"])
            totals = await sql.write_totals(connection, session_id, _maximum(interview))
            await _evaluated(connection, session_id, totals, summary, now)
            data = {**asdict(totals), "recommendation": summary.recommendation.value}
            news = evaluated(session_id, now, data)
            made = await events.append(
                connection, [(interview.id, news)], sqlite=self._sqlite
            )
        self.database.announce(made)
        return totals

    @translated
    async def schedule_summary_retry(
        self, session_id: SessionId, retry_at: Millis
    ) -> None:
        statement = (
            sessions.update()
            .where(sessions.c.id == session_id, sessions.c.summary.is_(None))
            .values(
                summary_attempts=sessions.c.summary_attempts + 1,
                summary_enqueued_at=None,
                summary_retry_at=retry_at,
            )
        )
        async with self.database.transaction() as connection:
            await connection.execute(statement)

    # -- recruiters -------------------------------------------------------------------

    @translated
    async def list_sessions(self, interview_id: InterviewId) -> list[SessionSummary]:
        query = (
            sessions.select()
            .where(sessions.c.interview_id == interview_id)
            .order_by(sessions.c.started_at, sessions.c.id)
        )
        return [session_summary(row) for row in await self.database.fetch_all(query)]

    @translated
    async def session_detail(self, session_id: SessionId) -> SessionDetail | None:
        row = await self.database.fetch_one(sql.session(session_id))
        if row is None:
            return None
        questions = (await self._interview(row["interview_id"])).definition.questions
        rows = await self.database.fetch_all(sql.answers_of(session_id))
        audit, audit_next = await self._audit(session_id, None, AUDIT_PAGE)
        late = await self.database.fetch_all(late_answers_of(session_id))
        return SessionDetail(
            session=session_summary(row),
            summary=row["summary"],
            summary_model=row["summary_model"],
            summary_prompt_version=row["summary_prompt_version"],
            summary_raw=row["summary_raw"],
            answers=tuple(
                answer_record(r, questions[r["question_index"]]) for r in rows
            ),
            audit=audit,
            audit_next=audit_next,
            late_answers=tuple(late_answers(line) for line in late),
        )

    @translated
    async def audit_page(
        self, session_id: SessionId, *, after: str | None, limit: int
    ) -> AuditPage | None:
        """The ``limit`` entries after cursor ``after`` (from the first when
        ``None``); ``None`` for an unknown attempt. Raises :class:`ValueError` for
        a cursor this store did not give."""
        start = _cursor(after)
        query = sa.select(sessions.c.interview_id).where(sessions.c.id == session_id)
        interview_id = await self.database.fetch_val(query)
        if interview_id is None:
            return None
        audit, following = await self._audit(session_id, start, limit)
        return AuditPage(interview_id=interview_id, audit=audit, next=following)

    async def _audit(
        self, session_id: SessionId, after: int | None, limit: int
    ) -> tuple[tuple[AuditLine, ...], str | None]:
        rows = await self.database.fetch_all(audit_page(session_id, after, limit))
        page = rows[:limit]
        following = str(page[-1]["id"]) if len(rows) > limit else None
        return tuple(audit_line(row) for row in page), following

    @translated
    async def override(
        self,
        session_id: SessionId,
        index: int,
        *,
        score: float,
        note: str,
        by: str,
        now: Millis,
    ) -> float | None:
        """Set a recruiter's score beside the model's; the previous effective score.

        Raises:
            UnknownAnswer: no such attempt or answer.
        """
        async with self.database.transaction() as connection:
            # The session row first: a summary being written waits, or is seen.
            held = await sql.hold_session(connection, session_id)
            current = await connection.fetch_one(
                sa.select(answers.c.score, answers.c.override_score).where(
                    *sql.answer_is(session_id, index)
                )
            )
            if held is None or current is None:
                raise UnknownAnswer(session_id, index)
            await connection.execute(
                answers.update()
                .where(*sql.answer_is(session_id, index))
                .values(
                    override_score=score,
                    override_note=note,
                    overridden_by=by,
                    overridden_at=now,
                )
            )
            previous: float | None = current["override_score"]
            previous = current["score"] if previous is None else previous
            data = {"question_index": index, "score": score, "previous": previous}
            await sql.insert_audit_line(
                connection,
                session_id,
                at=now,
                actor=by,
                kind=SCORE_OVERRIDDEN,
                data=data | {"note": note},
            )
            # The webhook, in the transaction that stores the override.
            await record_session_event(
                connection,
                EventType.SCORE_OVERRIDDEN,
                session_id,
                at=now,
                data=data | {"overridden_by": by},
            )
            if held["summary"] is not None:
                interview = await self._interview(held["interview_id"])
                await sql.write_totals(connection, session_id, _maximum(interview))
            news = score_overridden(session_id, now, data | {"by": by})
            made = await events.append(
                connection,
                [(InterviewId(held["interview_id"]), news)],
                sqlite=self._sqlite,
            )
        self.database.announce(made)
        return previous

    @translated
    async def reevaluate(self, session_id: SessionId, *, by: str, now: Millis) -> bool:
        """Grade the attempt again: answers back to pending, the summary cleared.

        Overrides are kept (a person's decision). Whether it applied: only a
        ``completed`` or ``evaluated`` attempt can be re-evaluated.
        """
        finished = [status.value for status in REEVALUABLE]
        async with self.database.transaction() as connection:
            applied = await connection.fetch_one(
                sessions.update()
                .where(sessions.c.id == session_id, sessions.c.status.in_(finished))
                .values(status=Status.COMPLETED.value, summary_attempts=0)
                .values(sql.UNSUMMARISED)
                .returning(sessions.c.id)
            )
            if applied is None:
                return False
            # The grades being replaced stay in the audit log.
            rows = await connection.fetch_all(sql.answers_of(session_id))
            scores = {str(row["question_index"]): row["score"] for row in rows}
            await connection.execute(
                answers.update()
                .where(answers.c.session_id == session_id)
                .values(evaluation_status=PENDING, grading_attempts=0)
                .values(sql.UNGRADED)
            )
            await sql.insert_audit_line(
                connection,
                session_id,
                at=now,
                actor=by,
                kind=REEVALUATED,
                data={"previous_scores": scores},
            )
        return True


async def _evaluated(
    connection: Connection,
    session_id: SessionId,
    totals: Totals,
    summary: Summary,
    now: Millis,
) -> None:
    """The webhook of a summary, in the transaction that stores it."""
    data = {
        "final_score": totals.final_score,
        "max_score": totals.max_score,
        "percentage": totals.percentage,
        "recommendation": summary.recommendation.value,
        "evaluated_at": now,
    }
    await record_session_event(
        connection, EventType.SESSION_EVALUATED, session_id, at=now, data=data
    )


def _cursor(after: str | None) -> int | None:
    """An audit cursor is the id of the last entry of the page before (opaque to
    clients: only cursors this store gave are accepted)."""
    if after is None:
        return None
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise ValueError(f"expected an audit cursor, got {after[:40]!r}")
    return int(after)


def _grade_rows(
    outcomes: Sequence[tuple[JobKey, Outcome]],
) -> list[tuple[Any, ...]]:
    return [
        (
            session_id,
            index,
            outcome.grade.score,
            sql.json_text(dict(outcome.grade.feedback)),
            outcome.grade.model,
            outcome.grade.prompt_version,
            outcome.grade.raw,
            outcome.grade.provisional,
        )
        for (session_id, index), outcome in outcomes
        if isinstance(outcome, Graded)
    ]


def _evaluated_news(key: JobKey, outcome: Outcome, now: Millis) -> News:
    session_id, index = key
    data: dict[str, object] = {"question_index": index}
    match outcome:
        case Graded(grade):
            data |= {
                "status": EvaluationStatus.EVALUATED.value,
                "score": grade.score,
                "max_score": grade.max_score,
                "provisional": grade.provisional,
            }
        case NeedsReview(reason):
            data |= {"status": EvaluationStatus.NEEDS_REVIEW.value, "reason": reason}
        case RetryLater():  # pragma: no cover - retries make no event
            pass
    return answer_evaluated(session_id, now, data)


def _outcome_statement(
    session_id: SessionId, index: int, outcome: Outcome, now: Millis
) -> sa.UpdateBase:
    """The guarded UPDATE that stores ``outcome``; it returns a row when it applied."""
    match outcome:
        case Graded(grade):
            values: dict[str, object] = {
                "evaluation_status": EvaluationStatus.EVALUATED.value,
                "score": grade.score,
                "feedback": sql.json_text(dict(grade.feedback)),
                "model": grade.model,
                "prompt_version": grade.prompt_version,
                "raw_judgement": grade.raw,
                "provisional": grade.provisional,
                "review_reason": None,
                "evaluated_at": now,
            }
        case RetryLater(reason, retry_at):
            values = {
                "review_reason": reason,
                "enqueued_at": None,
                "retry_at": retry_at,
            }
        case NeedsReview(reason):
            values = {
                "evaluation_status": EvaluationStatus.NEEDS_REVIEW.value,
                "review_reason": reason,
                "evaluated_at": now,
            }
        case _:
            assert_never(outcome)
    return (
        answers.update()
        .where(
            *sql.answer_is(session_id, index),
            answers.c.evaluation_status == PENDING,
        )
        .values(grading_attempts=answers.c.grading_attempts + 1, **values)
        .returning(answers.c.id)
    )


def _maximum(interview: InterviewRecord) -> float:
    return sum(question.points for question in interview.definition.questions)
