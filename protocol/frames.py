"""Server frames built from attempts: what a candidate is shown, and nothing more."""

from __future__ import annotations

from protocol.attempt import Answer, Attempt, QuestionView, expire_due
from protocol.ids import Millis
from protocol.messages import (
    ActiveSession,
    Completed,
    InterviewRef,
    OptionOut,
    QuestionOut,
    State,
    TimeExpired,
    serialize,
    tick_text,
)

COMPLETED_MESSAGE = "Interview completed! Results will be available soon."


def question_out(view: QuestionView) -> QuestionOut:
    """The ``question`` of a ``state`` frame (a view never holds keys)."""
    options = None
    if view.options is not None:
        options = [OptionOut(id=option.id, text=option.text) for option in view.options]
    return QuestionOut(
        index=view.index,
        type=view.type,
        text=view.text,
        options=options,
        language=view.language,
        points=view.points,
        difficulty=view.difficulty,
        time_limit_s=view.time_limit_s,
    )


def state(attempt: Attempt, now: Millis, *, lease: str) -> str:
    """The ``state`` frame: only the current question, with its deadline and draft,
    and the ``lease`` of the connection's attachment (:mod:`protocol.lease`)."""
    current = attempt.in_progress
    draft = attempt.draft
    if draft is not None and draft.question_index != attempt.question_index:
        draft = None  # a draft of another question is never shown (nor expired)
    return serialize(
        State(
            session_id=attempt.session_id,
            interview=InterviewRef(id=attempt.interview_id, title=attempt.title),
            status=attempt.status.value,
            question_index=attempt.question_index,
            question_count=attempt.question_count,
            question=question_out(attempt.current) if current else None,
            deadline=attempt.deadline if current else None,
            remaining_ms=attempt.remaining_ms(now) if current else 0,
            server_time=now,
            draft=draft.text if current and draft is not None else None,
            attempt=attempt.number,
            lease=lease,
        )
    )


def tick(attempt: Attempt, now: Millis) -> str:
    """The ``tick`` frame of an attempt in progress."""
    deadline = attempt.deadline
    return tick_text(attempt.question_index, deadline, max(0, deadline - now), now)


def next_tick(deadline: Millis, now: Millis, interval: Millis) -> Millis:
    """When the next ``tick`` is due: the first time after ``now`` that lies a whole
    number of intervals from the deadline, so ``remaining_ms`` counts down in whole
    intervals."""
    if now < deadline:
        return deadline - ((deadline - now - 1) // interval) * interval
    return deadline + ((now - deadline) // interval + 1) * interval


def time_expired(answer: Answer) -> str:
    """The ``time_expired`` frame announcing an answer recorded by expiry."""
    return serialize(
        TimeExpired(question_index=answer.question_index, had_draft=answer.had_draft)
    )


def completed(attempt: Attempt) -> str:
    return serialize(
        Completed(session_id=attempt.session_id, message=COMPLETED_MESSAGE)
    )


def active_session(attempt: Attempt | None, now: Millis) -> ActiveSession | None:
    """What ``hello`` and ``GET /api/interviews/active`` report of an attempt.

    Questions that are overdue are counted as expired, as the server will record them,
    so the index and remaining time are those the candidate will find on resume.
    """
    if attempt is None:
        return None
    attempt, _ = expire_due(attempt, now)
    if not attempt.in_progress:
        return None
    return ActiveSession(
        session_id=attempt.session_id,
        interview_id=attempt.interview_id,
        title=attempt.title,
        question_index=attempt.question_index,
        question_count=attempt.question_count,
        remaining_ms=attempt.remaining_ms(now),
    )
