"""What :mod:`server.storage.results` returns, and how its rows become those values
(no I/O).

Recruiters see both scores of an answer: the model's (``model_score``) and their own
correction (``override_score``); ``score`` is the effective one, the override when set.
``provisional`` says the effective score is a heuristic's (the offline grader's) that
no person has confirmed: an override confirms it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from databases.interfaces import Record

from evaluators.grade import EvaluationStatus, Grade, QuestionResult
from protocol.definition import QuestionDef
from protocol.ids import InterviewId, Millis, SessionId


@dataclass(frozen=True, slots=True)
class GradingJob:
    """What grading one answer needs, keys included."""

    session_id: SessionId
    interview_id: InterviewId
    index: int
    question: QuestionDef
    answer: str
    time_expired: bool
    status: EvaluationStatus
    attempts: int
    enqueued_at: Millis | None
    """When its lease was last taken or renewed (``None``: given back)."""


@dataclass(frozen=True, slots=True)
class Graded:
    """A job's outcome: the grade to store."""

    grade: Grade


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A job's outcome: count the failed try; run it again from ``retry_at``."""

    reason: str
    retry_at: Millis


@dataclass(frozen=True, slots=True)
class NeedsReview:
    """A job's outcome: grading failed for good; a person must look."""

    reason: str


Outcome = Graded | RetryLater | NeedsReview


@dataclass(frozen=True, slots=True)
class SummaryJob:
    """What summarising an attempt needs: structured results, never answer text."""

    session_id: SessionId
    interview_id: InterviewId
    title: str
    status: str
    has_summary: bool
    attempts: int
    enqueued_at: Millis | None
    results: tuple[QuestionResult, ...]


@dataclass(frozen=True, slots=True)
class Totals:
    """An attempt's score, computed from the effective scores of its answers."""

    final_score: float
    max_score: float
    percentage: float


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One attempt in an interview's list: no answers."""

    id: str
    interview_id: str
    candidate_id: str
    candidate_name: str
    number: int
    status: str
    question_index: int
    question_count: int
    started_at: int
    completed_at: int | None
    final_score: float | None
    max_score: float | None
    percentage: float | None
    recommendation: str | None
    evaluated_at: int | None


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """One answer with its grading record and any override."""

    question_index: int
    type: str
    text: str
    points: float
    answer: str
    submitted_at: int
    time_taken_ms: int
    time_expired: bool
    had_draft: bool
    evaluation_status: EvaluationStatus
    score: float | None
    model_score: float | None
    feedback: Mapping[str, object] | None
    model: str | None
    prompt_version: str | None
    raw_judgement: str | None
    review_reason: str | None
    grading_attempts: int
    evaluated_at: int | None
    override_score: float | None
    override_note: str | None
    overridden_by: str | None
    overridden_at: int | None
    provisional: bool


@dataclass(frozen=True, slots=True)
class AuditLine:
    """An audit entry as stored; ``kind`` is a string, grading kinds included."""

    at: int
    actor: str
    kind: str
    data: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries of an attempt's audit log, oldest first; ``next`` is the cursor of
    the following page, ``None`` after the last entry."""

    interview_id: str
    audit: tuple[AuditLine, ...]
    next: str | None


@dataclass(frozen=True, slots=True)
class LateAnswers:
    """One question's late answers: how many came and how many the audit log kept
    whole, their characters, and the last one's time, length and SHA-256."""

    question_index: int
    received: int
    received_chars: int
    kept: int
    kept_chars: int
    last_at: int
    last_chars: int
    last_sha256: str


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """An attempt with its answers and the first page of its audit log
    (``audit_next``: the cursor of the next page, if any)."""

    session: SessionSummary
    summary: str | None
    summary_model: str | None
    summary_prompt_version: str | None
    summary_raw: str | None
    answers: tuple[AnswerRecord, ...]
    audit: tuple[AuditLine, ...]
    audit_next: str | None
    late_answers: tuple[LateAnswers, ...]


def effective_score(row: Record) -> float | None:
    override: float | None = row["override_score"]
    return row["score"] if override is None else override


def provisional(row: Record) -> bool:
    """The effective score is a heuristic's and no person has overridden it."""
    return bool(row["provisional"]) and row["override_score"] is None


def session_summary(row: Record) -> SessionSummary:
    return SessionSummary(
        id=row["id"],
        interview_id=row["interview_id"],
        candidate_id=row["candidate_id"],
        candidate_name=row["candidate_name"],
        number=row["number"],
        status=row["status"],
        question_index=row["question_index"],
        question_count=row["question_count"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        final_score=row["final_score"],
        max_score=row["max_score"],
        percentage=row["percentage"],
        recommendation=row["recommendation"],
        evaluated_at=row["evaluated_at"],
    )


def answer_record(row: Record, question: QuestionDef) -> AnswerRecord:
    feedback = row["feedback"]
    return AnswerRecord(
        question_index=row["question_index"],
        type=question.type,
        text=question.text,
        points=question.points,
        answer=row["text"],
        submitted_at=row["submitted_at"],
        time_taken_ms=row["time_taken_ms"],
        time_expired=bool(row["time_expired"]),
        had_draft=bool(row["had_draft"]),
        evaluation_status=EvaluationStatus(row["evaluation_status"]),
        score=effective_score(row),
        model_score=row["score"],
        feedback=None if feedback is None else json.loads(feedback),
        model=row["model"],
        prompt_version=row["prompt_version"],
        raw_judgement=row["raw_judgement"],
        review_reason=row["review_reason"],
        grading_attempts=row["grading_attempts"],
        evaluated_at=row["evaluated_at"],
        override_score=row["override_score"],
        override_note=row["override_note"],
        overridden_by=row["overridden_by"],
        overridden_at=row["overridden_at"],
        provisional=provisional(row),
    )


def audit_line(row: Record) -> AuditLine:
    return AuditLine(
        at=row["at"], actor=row["actor"], kind=row["kind"], data=json.loads(row["data"])
    )


def late_answers(row: Record) -> LateAnswers:
    return LateAnswers(
        question_index=row["question_index"],
        received=row["received"],
        received_chars=row["received_chars"],
        kept=row["kept"],
        kept_chars=row["kept_chars"],
        last_at=row["last_at"],
        last_chars=row["last_chars"],
        last_sha256=row["last_sha256"],
    )


def question_result(row: Record, question: QuestionDef) -> QuestionResult:
    """What the summary model sees of an answer: its effective score, never its text."""
    return QuestionResult(
        index=row["question_index"],
        type=question.type,
        difficulty=question.difficulty,
        points=question.points,
        score=effective_score(row) or 0.0,
        status=EvaluationStatus(row["evaluation_status"]),
        time_expired=bool(row["time_expired"]),
        provisional=provisional(row),
    )
