"""The timing rules of PROTOCOL.md section 1, one test per rule."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import attempt as attempt_module
from protocol.attempt import (
    REEVALUABLE,
    TRANSITIONS,
    Answer,
    Attempt,
    Draft,
    DraftVerdict,
    QuestionView,
    Status,
    Verdict,
    abandon,
    begin,
    change_between,
    expire_due,
    save_draft,
    submit,
)
from protocol.errors import InvalidState
from protocol.ids import InterviewId, Millis, SessionId, UserId

T0: Millis = 1_700_000_000_000
GRACE: Millis = 2_000


def question(index: int, limit_s: int = 60) -> QuestionView:
    return QuestionView(
        index=index,
        type="short_answer",
        text=f"question {index}",
        options=None,
        language=None,
        points=10.0,
        difficulty="medium",
        time_limit_s=limit_s,
    )


def started(*limits_s: int, grace_ms: Millis = GRACE, now: Millis = T0) -> Attempt:
    """An attempt begun at ``now`` with one question per limit (default: 60 s, 60 s)."""
    return begin(
        session_id=SessionId("s-1"),
        interview_id=InterviewId("i-1"),
        title="Backend interview",
        candidate_id=UserId("c-1"),
        number=1,
        questions=tuple(
            question(index, limit) for index, limit in enumerate(limits_s or (60, 60))
        ),
        grace_ms=grace_ms,
        now=now,
    )


def answered(attempt: Attempt, text: str, now: Millis) -> Attempt:
    """``attempt`` after an accepted answer to its current question."""
    submission = submit(attempt, attempt.question_index, text, now)
    assert submission.verdict is Verdict.ACCEPTED
    return submission.attempt


# -- begin --------------------------------------------------------------------------


def test_begin_makes_question_zero_current_at_the_start() -> None:
    attempt = started(30, 45)

    assert attempt.status is Status.IN_PROGRESS
    assert attempt.in_progress
    assert attempt.question_index == 0
    assert attempt.question_started_at == attempt.started_at == T0
    assert attempt.question_count == 2
    assert attempt.current == question(0, 30)
    assert attempt.deadline == T0 + 30_000
    assert attempt.closes_at == T0 + 30_000 + GRACE
    assert attempt.answers == ()
    assert attempt.draft is None
    assert attempt.completed_at is None


def test_begin_with_no_questions_raises_value_error() -> None:
    with pytest.raises(ValueError, match="at least one question"):
        begin(
            session_id=SessionId("s-1"),
            interview_id=InterviewId("i-1"),
            title="Empty",
            candidate_id=UserId("c-1"),
            number=1,
            questions=(),
            grace_ms=GRACE,
            now=T0,
        )


def test_time_limit_in_ms_is_the_limit_in_seconds_times_one_thousand() -> None:
    assert question(0, 90).time_limit_ms == 90_000


# -- answering ----------------------------------------------------------------------


def test_answering_question_one_early_then_question_two_is_accepted() -> None:
    attempt = started(60, 60)

    first = submit(attempt, 0, "first", T0 + 5_000)
    second = submit(first.attempt, 1, "second", T0 + 7_000)

    assert first.verdict is Verdict.ACCEPTED
    assert second.verdict is Verdict.ACCEPTED
    assert [a.text for a in second.attempt.answers] == ["first", "second"]


def test_time_taken_is_the_time_since_the_question_became_current() -> None:
    attempt = answered(started(60, 60), "first", T0 + 5_000)

    submission = submit(attempt, 1, "second", T0 + 12_000)

    assert submission.answer == Answer(
        question_index=1,
        text="second",
        submitted_at=T0 + 12_000,
        time_taken_ms=7_000,
    )


def test_answer_exactly_at_deadline_plus_grace_is_accepted() -> None:
    attempt = started(60, 60)

    submission = submit(attempt, 0, "just in time", T0 + 60_000 + GRACE)

    assert submission.verdict is Verdict.ACCEPTED
    assert submission.expired == ()
    assert submission.answer is not None
    assert submission.answer.time_taken_ms == 60_000 + GRACE
    assert not submission.answer.time_expired


def test_answer_one_ms_after_deadline_plus_grace_is_too_late() -> None:
    attempt = started(60, 60)

    submission = submit(attempt, 0, "too late", T0 + 60_000 + GRACE + 1)

    assert submission.verdict is Verdict.TOO_LATE
    assert submission.answer is None
    # The submit itself expired the overdue question: that is part of the change.
    assert submission.expired == (
        Answer(
            question_index=0,
            text="",
            submitted_at=T0 + 60_000 + GRACE,
            time_taken_ms=60_000 + GRACE,
            time_expired=True,
        ),
    )
    assert submission.attempt.answers == submission.expired
    assert submission.attempt.question_index == 1


def test_answering_an_expired_question_is_too_late() -> None:
    attempt, _ = expire_due(started(60, 60), T0 + 100_000)

    submission = submit(attempt, 0, "sorry", T0 + 100_001)

    assert submission.verdict is Verdict.TOO_LATE
    assert submission.expired == ()
    assert submission.attempt == attempt


def test_next_question_starts_when_the_answer_is_accepted() -> None:
    attempt = answered(started(60, 45), "first", T0 + 5_000)

    assert attempt.question_index == 1
    assert attempt.question_started_at == T0 + 5_000
    assert attempt.deadline == T0 + 5_000 + 45_000


def test_next_question_starts_at_closing_time_when_the_question_expires() -> None:
    attempt, expired = expire_due(started(60, 45), T0 + 70_000)

    assert [answer.question_index for answer in expired] == [0]
    assert attempt.question_index == 1
    assert attempt.question_started_at == T0 + 60_000 + GRACE


def test_nothing_expires_at_exactly_deadline_plus_grace() -> None:
    attempt = started(60, 60)

    after, expired = expire_due(attempt, T0 + 60_000 + GRACE)

    assert expired == ()
    assert after == attempt


def test_expiry_records_the_latest_draft_of_the_current_question() -> None:
    attempt = started(60, 60)
    attempt = save_draft(attempt, 0, "def f(", T0 + 10_000).attempt
    attempt = save_draft(attempt, 0, "def f(x):", T0 + 20_000).attempt

    after, expired = expire_due(attempt, T0 + 62_001)

    assert expired == (
        Answer(
            question_index=0,
            text="def f(x):",
            submitted_at=T0 + 62_000,
            time_taken_ms=62_000,
            time_expired=True,
            had_draft=True,
        ),
    )
    assert after.draft is None


def test_expiry_without_a_draft_records_an_empty_answer() -> None:
    _, expired = expire_due(started(60, 60), T0 + 62_001)

    assert expired[0].text == ""
    assert expired[0].time_expired
    assert not expired[0].had_draft


def test_expiry_ignores_a_draft_of_another_question() -> None:
    # Only the current question's draft counts, even if a stale one were loaded.
    attempt = dataclasses.replace(
        started(60, 60), draft=Draft(question_index=1, text="later", saved_at=T0)
    )

    _, expired = expire_due(attempt, T0 + 62_001)

    assert expired[0].text == ""
    assert not expired[0].had_draft


def test_a_long_absence_expires_the_following_questions_in_turn() -> None:
    attempt = started(60, 30, 90)

    after, expired = expire_due(attempt, T0 + 100_000)

    # Question 0 closes at 62 s; question 1 starts then and closes at 94 s.
    assert [(a.question_index, a.submitted_at - T0) for a in expired] == [
        (0, 62_000),
        (1, 94_000),
    ]
    assert after.question_index == 2
    assert after.question_started_at == T0 + 94_000
    assert after.in_progress


def test_a_long_absence_can_complete_the_attempt() -> None:
    attempt = started(60, 30, 90)

    after, expired = expire_due(attempt, T0 + 10 * 60_000)

    assert len(expired) == 3
    assert after.status is Status.COMPLETED
    assert after.completed_at == T0 + 60_000 + 30_000 + 90_000 + 3 * GRACE
    assert after.answers == expired
    assert expire_due(after, T0 + 20 * 60_000) == (after, ())


def test_resending_an_accepted_answer_is_a_duplicate_carrying_the_recorded_answer() -> (
    None
):
    first = submit(started(60, 60), 0, "first", T0 + 5_000)

    resent = submit(first.attempt, 0, "first", T0 + 6_000)

    assert resent.verdict is Verdict.DUPLICATE
    assert resent.answer == first.answer
    assert resent.attempt == first.attempt
    assert resent.expired == ()


def test_resending_an_answered_question_with_different_text_is_an_invalid_index() -> (
    None
):
    attempt = answered(started(60, 60), "first", T0 + 5_000)

    submission = submit(attempt, 0, "second thoughts", T0 + 6_000)

    assert submission.verdict is Verdict.INVALID_QUESTION_INDEX
    assert submission.answer is None
    assert submission.attempt == attempt


@pytest.mark.parametrize(
    "question_index",
    [1, 2, -1, 3, 100],
    ids=["next", "future", "negative", "end", "far"],
)
def test_answering_a_question_that_is_not_current_is_an_invalid_index(
    question_index: int,
) -> None:
    attempt = started(60, 60, 60)

    submission = submit(attempt, question_index, "x", T0 + 1_000)

    assert submission.verdict is Verdict.INVALID_QUESTION_INDEX
    assert submission.attempt == attempt


def test_the_last_answer_completes_the_attempt_with_completed_at() -> None:
    attempt = answered(started(60, 60), "first", T0 + 5_000)

    submission = submit(attempt, 1, "last", T0 + 9_000)

    assert submission.verdict is Verdict.ACCEPTED
    assert submission.attempt.status is Status.COMPLETED
    assert not submission.attempt.in_progress
    assert submission.attempt.completed_at == T0 + 9_000
    assert submission.attempt.question_index == 2


def test_answering_a_completed_attempt_is_an_invalid_index() -> None:
    attempt = answered(answered(started(60, 60), "a", T0 + 1), "b", T0 + 2)

    submission = submit(attempt, 2, "more", T0 + 3)

    assert submission.verdict is Verdict.INVALID_QUESTION_INDEX
    assert submission.attempt == attempt


def test_an_answer_records_whether_a_draft_had_been_saved() -> None:
    attempt = started(60, 60)
    with_draft = save_draft(attempt, 0, "draft", T0 + 1_000).attempt

    plain = submit(attempt, 0, "final", T0 + 2_000).answer
    drafted = submit(with_draft, 0, "final", T0 + 2_000).answer

    assert plain is not None
    assert drafted is not None
    assert not plain.had_draft
    assert drafted.had_draft


# -- drafts -------------------------------------------------------------------------


def test_the_latest_draft_wins() -> None:
    attempt = started(60, 60)

    first = save_draft(attempt, 0, "one", T0 + 1_000)
    second = save_draft(first.attempt, 0, "two", T0 + 2_000)

    assert first.verdict is second.verdict is DraftVerdict.SAVED
    assert second.attempt.draft == Draft(
        question_index=0, text="two", saved_at=T0 + 2_000
    )
    assert second.expired == ()


def test_a_draft_at_exactly_deadline_plus_grace_is_saved() -> None:
    outcome = save_draft(started(60, 60), 0, "late but ok", T0 + 62_000)

    assert outcome.verdict is DraftVerdict.SAVED


@pytest.mark.parametrize("question_index", [1, -1, 2])
def test_a_draft_for_a_question_that_is_not_current_is_an_invalid_index(
    question_index: int,
) -> None:
    attempt = started(60, 60)

    outcome = save_draft(attempt, question_index, "x", T0 + 1_000)

    assert outcome.verdict is DraftVerdict.INVALID_QUESTION_INDEX
    assert outcome.attempt == attempt


def test_a_draft_for_an_answered_question_is_an_invalid_index() -> None:
    attempt = answered(started(60, 60), "done", T0 + 1_000)

    outcome = save_draft(attempt, 0, "more", T0 + 2_000)

    assert outcome.verdict is DraftVerdict.INVALID_QUESTION_INDEX
    assert outcome.attempt == attempt


def test_a_draft_after_deadline_plus_grace_is_too_late_and_expires_the_question() -> (
    None
):
    attempt = save_draft(started(60, 60), 0, "kept", T0 + 1_000).attempt

    outcome = save_draft(attempt, 0, "lost", T0 + 62_001)

    assert outcome.verdict is DraftVerdict.TOO_LATE
    assert [(a.text, a.had_draft) for a in outcome.expired] == [("kept", True)]
    assert outcome.attempt.question_index == 1
    assert outcome.attempt.draft is None


# -- remaining time -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "remaining"),
    [(0, 60_000), (59_999, 1), (60_000, 0), (61_000, 0), (10**9, 0)],
)
def test_remaining_time_counts_down_to_the_deadline_and_is_never_negative(
    elapsed: Millis, remaining: Millis
) -> None:
    assert started(60).remaining_ms(T0 + elapsed) == remaining


# -- abandon ------------------------------------------------------------------------


def test_abandon_keeps_the_answers_and_drops_the_draft() -> None:
    attempt = answered(started(60, 60), "first", T0 + 1_000)
    attempt = save_draft(attempt, 1, "half", T0 + 2_000).attempt

    abandoned = abandon(attempt)

    assert abandoned.status is Status.ABANDONED
    assert not abandoned.in_progress
    assert abandoned.answers == attempt.answers
    assert abandoned.draft is None
    assert change_between(attempt, abandoned).advances


def test_an_abandoned_attempt_accepts_no_answer_and_never_expires() -> None:
    attempt = abandon(started(60, 60))

    submission = submit(attempt, 0, "x", T0 + 1_000)
    outcome = save_draft(attempt, 0, "x", T0 + 1_000)

    assert submission.verdict is Verdict.INVALID_QUESTION_INDEX
    assert outcome.verdict is DraftVerdict.INVALID_QUESTION_INDEX
    assert expire_due(attempt, T0 + 10**9) == (attempt, ())


def test_only_an_attempt_in_progress_can_be_abandoned() -> None:
    completed, _ = expire_due(started(60), T0 + 10**9)

    with pytest.raises(InvalidState, match="got completed"):
        abandon(completed)
    with pytest.raises(InvalidState, match="got abandoned"):
        abandon(abandon(started(60)))


# -- changes ------------------------------------------------------------------------


def test_change_between_lists_exactly_the_new_answers() -> None:
    before = answered(started(60, 60, 60), "first", T0 + 1_000)

    submission = submit(before, 2, "wrong index", T0 + 200_000)
    change = change_between(before, submission.attempt)

    assert change.before == before
    assert change.after == submission.attempt
    assert change.answers == submission.expired
    assert [a.question_index for a in change.answers] == [1, 2]
    assert change.advances


def test_a_change_without_answers_or_status_change_does_not_advance() -> None:
    before = started(60, 60)
    after = save_draft(before, 0, "typing", T0 + 1_000).attempt

    change = change_between(before, after)

    assert change.answers == ()
    assert not change.advances


def test_answer_for_finds_the_recorded_answer_or_none() -> None:
    attempt = answered(started(60, 60), "first", T0 + 1_000)

    recorded = attempt.answer_for(0)

    assert recorded is not None
    assert recorded.text == "first"
    assert attempt.answer_for(1) is None


# -- status transitions --------------------------------------------------------------


def documented_transitions() -> set[tuple[str, str]]:
    """The ``a -> b`` lines of protocol/attempt.py's docstring."""
    lines = (attempt_module.__doc__ or "").splitlines()
    arrows = [line.split() for line in lines if " -> " in line]
    return {(words[0], words[2]) for words in arrows}


def test_the_transitions_table_is_the_documented_one() -> None:
    table = {
        (before.value, after.value)
        for before, targets in TRANSITIONS.items()
        for after in targets
    }

    assert table == documented_transitions()
    assert ("evaluated", "completed") in table  # re-evaluation
    assert set(TRANSITIONS) == set(Status)


def test_only_finished_attempts_can_be_reevaluated_and_they_become_completed() -> None:
    assert REEVALUABLE == {Status.COMPLETED, Status.EVALUATED}
    assert Status.COMPLETED in TRANSITIONS[Status.EVALUATED]
    assert not TRANSITIONS[Status.ABANDONED]


def test_abandon_and_completion_are_transitions_of_an_attempt_in_progress() -> None:
    attempt = started(60)
    finished = expire_due(attempt, T0 + 10**6)[0]

    assert abandon(attempt).status in TRANSITIONS[attempt.status]
    assert finished.status in TRANSITIONS[attempt.status]
