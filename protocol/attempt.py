"""The timing rules of one attempt (PROTOCOL.md section 1, "Timing rules").

An :class:`Attempt` is an immutable snapshot of one candidate's attempt at one
interview. The functions here take an attempt and the server time ``now`` and return
a new attempt plus what happened; they never read a clock and never wait. The shell
persists the difference (see :class:`Change`) and only then tells the client.

The rules, in one place:

* Question *i* becomes current at ``question_started_at`` (T*i*). Its ``deadline`` is
  T*i* + limit*i*; it *closes* at ``deadline + grace``.
* An answer to the current question received at ``now <= closes_at`` is accepted and
  the next question starts at ``now``.
* When ``now > closes_at`` the question expires: the latest draft (or "") is recorded
  as its answer with ``time_expired`` and the next question starts at ``closes_at``,
  so a long absence expires the following questions in turn (:func:`expire_due`).
* An accepted answer re-sent with the same text is a duplicate; anything else aimed at
  an index that is not current is ``invalid_question_index``, or ``too_late`` when that
  question expired unanswered.

Transitions of :class:`Status` (:data:`TRANSITIONS`; this module makes the first two,
the server's grading store the last two, guarded by the status they start from)::

    in_progress -> completed    the last question was answered or expired
    in_progress -> abandoned    Start Over (:func:`abandon`)
    completed   -> evaluated    grading finished: the summary was written
    evaluated   -> completed    re-evaluation: grading starts over (a completed
                                attempt may be re-evaluated too, and stays completed;
                                :data:`REEVALUABLE`)
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.errors import InvalidState
from protocol.ids import InterviewId, Millis, SessionId, UserId

__all__ = [
    "Answer",
    "Attempt",
    "Change",
    "Draft",
    "DraftVerdict",
    "DraftOutcome",
    "Option",
    "QuestionView",
    "REEVALUABLE",
    "Status",
    "TRANSITIONS",
    "Submission",
    "Verdict",
    "abandon",
    "begin",
    "change_between",
    "expire_due",
    "save_draft",
    "submit",
]


class Status(enum.StrEnum):
    """Lifecycle of an attempt (PRODUCT.md section 4)."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    EVALUATED = "evaluated"
    ABANDONED = "abandoned"


TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.ABANDONED}),
    Status.COMPLETED: frozenset({Status.EVALUATED}),
    Status.EVALUATED: frozenset({Status.COMPLETED}),
    Status.ABANDONED: frozenset(),
}
"""The status each status may become (see the module docstring)."""

REEVALUABLE = frozenset({Status.COMPLETED, Status.EVALUATED})
"""The statuses re-evaluation applies to; it leaves the attempt ``completed``."""


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a multiple-choice question; the answer is its ``id``."""

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class QuestionView:
    """What a candidate may see of a question: never a key, a solution or a test."""

    index: int
    type: str
    text: str
    options: tuple[Option, ...] | None
    language: str | None
    points: float
    difficulty: str
    time_limit_s: int

    @property
    def time_limit_ms(self) -> Millis:
        return self.time_limit_s * 1000


@dataclass(frozen=True, slots=True)
class Answer:
    """The one answer recorded for a question, by the candidate or by expiry."""

    question_index: int
    text: str
    submitted_at: Millis
    time_taken_ms: Millis
    time_expired: bool = False
    had_draft: bool = False


@dataclass(frozen=True, slots=True)
class Draft:
    """The latest autosaved text of the current question."""

    question_index: int
    text: str
    saved_at: Millis


@dataclass(frozen=True, slots=True)
class Attempt:
    """An immutable snapshot of one attempt; build new ones with the functions below."""

    session_id: SessionId
    interview_id: InterviewId
    title: str
    candidate_id: UserId
    number: int
    questions: tuple[QuestionView, ...]
    grace_ms: Millis
    status: Status
    question_index: int
    question_started_at: Millis
    started_at: Millis
    completed_at: Millis | None = None
    answers: tuple[Answer, ...] = ()
    draft: Draft | None = None

    @property
    def question_count(self) -> int:
        return len(self.questions)

    @property
    def in_progress(self) -> bool:
        return self.status is Status.IN_PROGRESS

    @property
    def current(self) -> QuestionView:
        """The current question. Requires an attempt in progress."""
        return self.questions[self.question_index]

    @property
    def deadline(self) -> Millis:
        """When the current question's time is up (shown to the client)."""
        return self.question_started_at + self.current.time_limit_ms

    @property
    def closes_at(self) -> Millis:
        """The last instant at which an answer to the current question is accepted."""
        return self.deadline + self.grace_ms

    def remaining_ms(self, now: Millis) -> Millis:
        """Time left on the current question, never negative."""
        return max(0, self.deadline - now)

    def answer_for(self, question_index: int) -> Answer | None:
        for answer in self.answers:
            if answer.question_index == question_index:
                return answer
        return None


def begin(
    *,
    session_id: SessionId,
    interview_id: InterviewId,
    title: str,
    candidate_id: UserId,
    number: int,
    questions: tuple[QuestionView, ...],
    grace_ms: Millis,
    now: Millis,
) -> Attempt:
    """Start attempt ``number``: question 0 becomes current at ``now``.

    Raises:
        ValueError: the interview has no questions.
    """
    if not questions:
        raise ValueError("an interview needs at least one question")
    return Attempt(
        session_id=session_id,
        interview_id=interview_id,
        title=title,
        candidate_id=candidate_id,
        number=number,
        questions=questions,
        grace_ms=grace_ms,
        status=Status.IN_PROGRESS,
        question_index=0,
        question_started_at=now,
        started_at=now,
    )


def abandon(attempt: Attempt) -> Attempt:
    """Start Over: the attempt is kept, marked abandoned, for recruiters to see.

    Expire what is due first (:func:`expire_due`): an attempt whose time ran out is
    completed, not abandoned.

    Raises:
        InvalidState: the attempt is not in progress (only ``in_progress`` may become
            ``abandoned``).
    """
    if not attempt.in_progress:
        raise InvalidState(f"expected an attempt in progress, got {attempt.status}")
    return dataclasses.replace(attempt, status=Status.ABANDONED, draft=None)


def _advance(attempt: Attempt, answer: Answer, next_starts_at: Millis) -> Attempt:
    """Record ``answer`` for the current question and make the next one current."""
    next_index = attempt.question_index + 1
    done = next_index >= attempt.question_count
    return dataclasses.replace(
        attempt,
        answers=(*attempt.answers, answer),
        question_index=next_index,
        question_started_at=next_starts_at,
        status=Status.COMPLETED if done else Status.IN_PROGRESS,
        completed_at=next_starts_at if done else None,
        draft=None,
    )


def _current_draft(attempt: Attempt) -> Draft | None:
    draft = attempt.draft
    return draft if draft and draft.question_index == attempt.question_index else None


def expire_due(attempt: Attempt, now: Millis) -> tuple[Attempt, tuple[Answer, ...]]:
    """Expire every question whose ``closes_at`` is before ``now``, in turn.

    Each expired question gets the latest draft (or "") as its answer, submitted at its
    ``closes_at``, and the next question starts at that same instant.

    Returns:
        The attempt after the expiries and the answers recorded by them (may be empty).
    """
    expired: list[Answer] = []
    while attempt.in_progress and now > attempt.closes_at:
        draft = _current_draft(attempt)
        closes_at = attempt.closes_at
        answer = Answer(
            question_index=attempt.question_index,
            text=draft.text if draft else "",
            submitted_at=closes_at,
            time_taken_ms=closes_at - attempt.question_started_at,
            time_expired=True,
            had_draft=draft is not None,
        )
        expired.append(answer)
        attempt = _advance(attempt, answer, closes_at)
    return attempt, tuple(expired)


class Verdict(enum.StrEnum):
    """What became of a submitted answer."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    INVALID_QUESTION_INDEX = "invalid_question_index"


@dataclass(frozen=True, slots=True)
class Submission:
    """The outcome of :func:`submit`.

    ``expired`` lists the questions that expired before the answer was considered; they
    are part of the change to persist whatever the verdict.
    """

    attempt: Attempt
    verdict: Verdict
    expired: tuple[Answer, ...]
    answer: Answer | None = None


def _classify_stale(attempt: Attempt, question_index: int, text: str) -> Verdict:
    recorded = attempt.answer_for(question_index)
    if recorded is None:
        return Verdict.INVALID_QUESTION_INDEX
    if recorded.time_expired:
        return Verdict.TOO_LATE
    if recorded.text == text:
        return Verdict.DUPLICATE
    return Verdict.INVALID_QUESTION_INDEX


def submit(attempt: Attempt, question_index: int, text: str, now: Millis) -> Submission:
    """Apply the candidate's answer ``text`` to ``question_index``, received at ``now``.

    Overdue questions are expired first, so an answer that arrives after its question
    closed is ``too_late`` even when nothing had expired it yet.

    Returns:
        A :class:`Submission`; its ``answer`` is the new answer when accepted, or the
        recorded one when the answer is a duplicate.
    """
    attempt, expired = expire_due(attempt, now)
    if attempt.in_progress and question_index == attempt.question_index:
        answer = Answer(
            question_index=question_index,
            text=text,
            submitted_at=now,
            # never negative, even if another instance's clock ran ahead
            time_taken_ms=max(0, now - attempt.question_started_at),
            had_draft=_current_draft(attempt) is not None,
        )
        return Submission(
            _advance(attempt, answer, now), Verdict.ACCEPTED, expired, answer
        )
    verdict = _classify_stale(attempt, question_index, text)
    recorded = attempt.answer_for(question_index)
    duplicate_of = recorded if verdict is Verdict.DUPLICATE else None
    return Submission(attempt, verdict, expired, duplicate_of)


class DraftVerdict(enum.StrEnum):
    """What became of an autosaved draft."""

    SAVED = "saved"
    TOO_LATE = "too_late"
    INVALID_QUESTION_INDEX = "invalid_question_index"


@dataclass(frozen=True, slots=True)
class DraftOutcome:
    """The outcome of :func:`save_draft`; ``expired`` as in :class:`Submission`."""

    attempt: Attempt
    verdict: DraftVerdict
    expired: tuple[Answer, ...]


def save_draft(
    attempt: Attempt, question_index: int, text: str, now: Millis
) -> DraftOutcome:
    """Keep ``text`` as the latest draft of the current question (latest wins)."""
    attempt, expired = expire_due(attempt, now)
    if attempt.in_progress and question_index == attempt.question_index:
        draft = Draft(question_index=question_index, text=text, saved_at=now)
        return DraftOutcome(
            dataclasses.replace(attempt, draft=draft), DraftVerdict.SAVED, expired
        )
    recorded = attempt.answer_for(question_index)
    if recorded is not None and recorded.time_expired:
        return DraftOutcome(attempt, DraftVerdict.TOO_LATE, expired)
    return DraftOutcome(attempt, DraftVerdict.INVALID_QUESTION_INDEX, expired)


@dataclass(frozen=True, slots=True)
class Change:
    """What the shell must persist, atomically, to move ``before`` to ``after``.

    The write is conditional: it applies only while the stored attempt is still in
    progress at ``before.question_index`` (and, for a connection, still owned by the
    writer's fence). Otherwise someone else changed it first; the shell reloads and
    decides again.
    """

    before: Attempt
    after: Attempt
    answers: tuple[Answer, ...]

    @property
    def advances(self) -> bool:
        return bool(self.answers) or self.after.status is not self.before.status


def change_between(before: Attempt, after: Attempt) -> Change:
    """The answers ``after`` recorded on top of ``before``, as one :class:`Change`."""
    return Change(
        before=before, after=after, answers=after.answers[len(before.answers) :]
    )
