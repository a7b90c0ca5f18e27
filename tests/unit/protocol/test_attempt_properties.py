"""Properties of the timing rules over random schedules (protocol/attempt.py).

A schedule is a list of events at non-decreasing server times: answers (to the
question the client believes current, to a wrong index, or re-sends), drafts, resumes
after a disconnect (in the pure model a disconnect is only "no event for a while"),
and crashes of the server. The run keeps a model of what the shell would commit
(commit before ack); a crash drops the in-memory attempt and rebuilds it from that
committed data alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import given, settings, strategies as st

from protocol.attempt import (
    TRANSITIONS,
    Answer,
    Attempt,
    Change,
    Draft,
    DraftVerdict,
    QuestionView,
    Status,
    Verdict,
    begin,
    change_between,
    expire_due,
    save_draft,
    submit,
)
from protocol.ids import InterviewId, Millis, SessionId, UserId

settings.register_profile("attempt-properties", max_examples=100, deadline=None)
PROPERTIES = settings.get_profile("attempt-properties")

T0: Millis = 1_700_000_000_000
TEXTS = ("", "a", "b", "def f(): ...")


@dataclass(frozen=True, slots=True)
class Interview:
    limits_s: tuple[int, ...]
    grace_ms: Millis

    @property
    def bound_ms(self) -> Millis:
        """Σ limits + n·grace: no attempt may last longer."""
        return sum(self.limits_s) * 1000 + len(self.limits_s) * self.grace_ms

    def limit_ms(self, index: int) -> Millis:
        return self.limits_s[index] * 1000


@dataclass(frozen=True, slots=True)
class Event:
    delay_ms: Millis
    kind: Literal["answer", "resend", "wrong_answer", "draft", "wrong_draft", "resume"]
    text: str
    wrong_index: int
    crash_after: bool


def questions(interview: Interview) -> tuple[QuestionView, ...]:
    return tuple(
        QuestionView(
            index=index,
            type="short_answer",
            text=f"question {index}",
            options=None,
            language=None,
            points=1.0,
            difficulty="easy",
            time_limit_s=limit,
        )
        for index, limit in enumerate(interview.limits_s)
    )


def initial(interview: Interview) -> Attempt:
    return begin(
        session_id=SessionId("s-1"),
        interview_id=InterviewId("i-1"),
        title="Property interview",
        candidate_id=UserId("c-1"),
        number=1,
        questions=questions(interview),
        grace_ms=interview.grace_ms,
        now=T0,
    )


interviews = st.builds(
    Interview,
    limits_s=st.lists(st.integers(1, 600), min_size=1, max_size=6).map(tuple),
    grace_ms=st.integers(0, 5_000),
)

delays = st.one_of(
    st.integers(0, 3_000),  # typing, arrival jitter
    st.integers(0, 120_000),  # thinking
    st.integers(0, 900_000),  # a long disconnect
)

events = st.builds(
    Event,
    delay_ms=delays,
    kind=st.sampled_from(
        ["answer", "resend", "wrong_answer", "draft", "wrong_draft", "resume"]
    ),
    text=st.sampled_from(TEXTS),
    wrong_index=st.integers(-2, 8),
    crash_after=st.booleans(),
)

schedules = st.lists(events, max_size=25)


# -- the shell, reduced to what it commits ------------------------------------------


@dataclass
class Database:
    """The committed rows of one attempt: session position, answers, drafts."""

    position: Attempt
    answers: list[Answer] = field(default_factory=list)
    drafts: dict[int, Draft] = field(default_factory=dict)

    def commit(self, change: Change) -> None:
        assert change.before.answers == tuple(self.answers), "stale write"
        for answer in change.answers:
            # unique (session, question_index): nothing is stored twice
            assert self.answer_for(answer.question_index) is None
            self.answers.append(answer)
        self.position = change.after

    def save_draft(self, draft: Draft) -> None:
        assert draft.question_index == self.position.question_index
        self.drafts[draft.question_index] = draft

    def answer_for(self, index: int) -> Answer | None:
        return next((a for a in self.answers if a.question_index == index), None)

    def reload(self, interview: Interview) -> Attempt:
        """What load_attempt rebuilds: the interview, the stored rows, nothing else."""
        return dataclasses.replace(
            initial(interview),
            status=self.position.status,
            question_index=self.position.question_index,
            question_started_at=self.position.question_started_at,
            completed_at=self.position.completed_at,
            answers=tuple(self.answers),
            draft=self.drafts.get(self.position.question_index),
        )


@dataclass
class Run:
    interview: Interview
    attempt: Attempt
    database: Database
    now: Millis = T0
    accepted: list[tuple[Answer, Millis]] = field(default_factory=list)
    resumed: list[tuple[Attempt, Millis, Millis]] = field(default_factory=list)
    trace: list[Attempt] = field(default_factory=list)  # after each event

    def started_at_of_current(self) -> Millis:
        """T_i, derived from the recorded answers rather than the attempt's field."""
        answers = self.attempt.answers
        return answers[-1].submitted_at if answers else self.attempt.started_at

    def answer(self, question_index: int, text: str) -> Verdict:
        before = self.attempt
        submission = submit(before, question_index, text, self.now)
        self.database.commit(change_between(before, submission.attempt))
        if submission.verdict is Verdict.ACCEPTED:
            answers = submission.attempt.answers
            assert submission.answer == answers[-1]
            self.accepted.append((submission.answer, self._closes_at(answers)))
        self.attempt = submission.attempt
        return submission.verdict

    def draft(self, question_index: int, text: str) -> None:
        before = self.attempt
        outcome = save_draft(before, question_index, text, self.now)
        self.database.commit(change_between(before, outcome.attempt))
        if outcome.verdict is DraftVerdict.SAVED:
            assert outcome.attempt.draft is not None
            self.database.save_draft(outcome.attempt.draft)
        self.attempt = outcome.attempt

    def resume(self) -> None:
        before = self.attempt
        self.attempt, _ = expire_due(before, self.now)
        self.database.commit(change_between(before, self.attempt))
        self.resumed.append((self.attempt, self.started_at_of_current(), self.now))

    def crash(self) -> None:
        self.attempt = self.database.reload(self.interview)

    def _closes_at(self, answers: tuple[Answer, ...]) -> Millis:
        """When the question of the last of ``answers`` closed, from its own start."""
        *earlier, last = answers
        started_at = earlier[-1].submitted_at if earlier else T0
        limit_ms = self.interview.limit_ms(last.question_index)
        return started_at + limit_ms + self.interview.grace_ms


def play(interview: Interview, schedule: list[Event], *, crashes: bool) -> Run:
    attempt = initial(interview)
    run = Run(interview, attempt, Database(attempt))
    for event in schedule:
        run.now += event.delay_ms
        sent = step(run, event)
        if crashes and event.crash_after:
            run.crash()
            if sent is not None:
                # The ack was lost with the server: the client sends the answer again.
                (question_index, text), verdict = sent
                again = run.answer(question_index, text)
                assert again is (
                    Verdict.DUPLICATE if verdict is Verdict.ACCEPTED else verdict
                )
        run.trace.append(run.attempt)
    run.now += interview.bound_ms + 1
    run.resume()
    return run


Sent = tuple[tuple[int, str], Verdict]


def step(run: Run, event: Event) -> Sent | None:
    """Apply ``event``; for an answer, what was sent and its verdict."""
    current = run.attempt.question_index  # what the client was last told
    match event.kind:
        case "answer" | "resend" | "wrong_answer":
            frame = answer_frame(run, event, current)
            return frame, run.answer(*frame)
        case "draft":
            run.draft(current, event.text)
        case "wrong_draft":
            run.draft(event.wrong_index, event.text)
        case "resume":
            run.resume()
    return None


def answer_frame(run: Run, event: Event, current: int) -> tuple[int, str]:
    if event.kind == "wrong_answer":
        return event.wrong_index, event.text
    if event.kind == "resend" and run.accepted:
        last, _ = run.accepted[-1]
        return last.question_index, last.text
    return current, event.text


# -- properties ---------------------------------------------------------------------


@PROPERTIES
@given(interviews, schedules)
def test_nothing_is_accepted_after_deadline_plus_grace(
    interview: Interview, schedule: list[Event]
) -> None:
    run = play(interview, schedule, crashes=False)

    for answer, closes_at in run.accepted:
        assert answer.submitted_at <= closes_at
        assert not answer.time_expired


@PROPERTIES
@given(interviews, schedules)
def test_each_question_is_answered_exactly_once_in_order(
    interview: Interview, schedule: list[Event]
) -> None:
    run = play(interview, schedule, crashes=False)

    assert run.attempt.status is Status.COMPLETED
    indexes = [answer.question_index for answer in run.attempt.answers]
    assert indexes == list(range(len(interview.limits_s)))
    assert run.database.answers == list(run.attempt.answers)


@PROPERTIES
@given(interviews, schedules)
def test_an_attempt_never_outlasts_the_sum_of_limits_and_graces(
    interview: Interview, schedule: list[Event]
) -> None:
    attempt = play(interview, schedule, crashes=False).attempt

    assert attempt.completed_at is not None
    assert attempt.completed_at == attempt.answers[-1].submitted_at
    assert attempt.completed_at - attempt.started_at <= interview.bound_ms


@PROPERTIES
@given(interviews, schedules)
def test_each_question_starts_when_the_previous_one_ended(
    interview: Interview, schedule: list[Event]
) -> None:
    attempt = play(interview, schedule, crashes=False).attempt

    started_at = attempt.started_at
    for answer in attempt.answers:
        closes_at = started_at + interview.limit_ms(answer.question_index)
        closes_at += interview.grace_ms
        assert answer.time_taken_ms == answer.submitted_at - started_at >= 0
        if answer.time_expired:
            assert answer.submitted_at == closes_at
        else:
            assert answer.submitted_at <= closes_at
        started_at = answer.submitted_at  # T_{i+1}: non-decreasing by the above


@PROPERTIES
@given(interviews, schedules)
def test_remaining_time_on_resume_is_the_deadline_minus_now(
    interview: Interview, schedule: list[Event]
) -> None:
    run = play(interview, schedule, crashes=False)

    for attempt, started_at, now in run.resumed:
        if attempt.in_progress:
            deadline = started_at + interview.limit_ms(attempt.question_index)
            assert attempt.remaining_ms(now) == max(0, deadline - now)
            assert attempt.deadline == deadline
        else:
            assert attempt.status is Status.COMPLETED


@PROPERTIES
@given(interviews, schedules)
def test_a_crash_and_reload_leaves_the_same_state_as_no_crash(
    interview: Interview, schedule: list[Event]
) -> None:
    without = play(interview, schedule, crashes=False)
    with_crashes = play(interview, schedule, crashes=True)

    assert with_crashes.trace == without.trace
    assert with_crashes.attempt == without.attempt
    assert with_crashes.database.answers == without.database.answers


@PROPERTIES
@given(interviews, schedules)
def test_the_status_only_ever_makes_documented_transitions(
    interview: Interview, schedule: list[Event]
) -> None:
    run = play(interview, schedule, crashes=False)

    statuses = [initial(interview).status, *(a.status for a in run.trace)]
    statuses.append(run.attempt.status)
    for before, after in zip(statuses, statuses[1:], strict=False):
        assert before == after or after in TRANSITIONS[before]
