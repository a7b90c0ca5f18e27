"""Who may start or restart an attempt, and which refusal wins.

Tests protocol/admission.py: the refusal rules, then admission from the facts.
"""

from __future__ import annotations

import pytest

from protocol.admission import (
    EXHAUSTED,
    IN_PROGRESS,
    NO_ACTIVE,
    NOT_FOUND,
    Refusal,
    admit_restart,
    admit_start,
    decide_restart,
    decide_start,
)
from protocol.attempt import Attempt, QuestionView, Status, abandon, begin, expire_due
from protocol.definition import InterviewDefinition, parse_definition
from protocol.errors import ErrorCode
from protocol.ids import InterviewId, Millis, SessionId, UserId

T0: Millis = 1_700_000_000_000


def started() -> Attempt:
    view = QuestionView(
        index=0,
        type="short_answer",
        text="q",
        options=None,
        language=None,
        points=1.0,
        difficulty="easy",
        time_limit_s=60,
    )
    return begin(
        session_id=SessionId("s-1"),
        interview_id=InterviewId("i-1"),
        title="t",
        candidate_id=UserId("c-1"),
        number=1,
        questions=(view,),
        grace_ms=2_000,
        now=T0,
    )


def completed() -> Attempt:
    attempt, _ = expire_due(started(), T0 + 1_000_000)
    assert not attempt.in_progress
    return attempt


# -- start -----------------------------------------------------------------------------


def test_an_invited_candidate_with_attempts_left_may_start() -> None:
    assert decide_start(invited=True, active=None, used=0, max_attempts=1) is None


def test_an_attempt_that_is_not_in_progress_does_not_block_a_start() -> None:
    assert (
        decide_start(invited=True, active=completed(), used=1, max_attempts=2) is None
    )


def test_a_candidate_not_invited_gets_not_found() -> None:
    refusal = decide_start(invited=False, active=None, used=0, max_attempts=1)

    assert refusal == NOT_FOUND
    assert refusal.code is ErrorCode.NOT_FOUND


def test_not_invited_wins_over_every_other_refusal() -> None:
    refusal = decide_start(invited=False, active=started(), used=5, max_attempts=1)

    assert refusal == NOT_FOUND


def test_an_attempt_in_progress_gets_already_in_progress() -> None:
    refusal = decide_start(invited=True, active=started(), used=0, max_attempts=3)

    assert refusal == IN_PROGRESS
    assert refusal.code is ErrorCode.ALREADY_IN_PROGRESS


def test_in_progress_wins_over_exhausted() -> None:
    refusal = decide_start(invited=True, active=started(), used=3, max_attempts=3)

    assert refusal == IN_PROGRESS


@pytest.mark.parametrize(("used", "max_attempts"), [(1, 1), (3, 3), (4, 3)])
def test_used_attempts_at_the_limit_get_attempts_exhausted(
    used: int, max_attempts: int
) -> None:
    refusal = decide_start(
        invited=True, active=None, used=used, max_attempts=max_attempts
    )

    assert refusal == EXHAUSTED
    assert refusal.code is ErrorCode.ATTEMPTS_EXHAUSTED


def test_one_attempt_below_the_limit_may_start() -> None:
    assert decide_start(invited=True, active=None, used=2, max_attempts=3) is None


def test_an_archived_interview_is_not_available_since_it_was_archived() -> None:
    refusal = decide_start(
        invited=True, active=None, used=0, max_attempts=1, archived_at=T0 - 5
    )

    assert refusal is not None
    assert refusal.code is ErrorCode.NOT_AVAILABLE
    assert (refusal.opens_at, refusal.closes_at) == (None, T0 - 5)


def test_not_invited_wins_over_archived_so_that_nobody_learns_of_it() -> None:
    refusal = decide_start(
        invited=False, active=None, used=0, max_attempts=1, archived_at=T0
    )

    assert refusal == NOT_FOUND


def test_archived_wins_over_in_progress_and_exhausted() -> None:
    refusal = decide_start(
        invited=True, active=started(), used=3, max_attempts=1, archived_at=T0
    )

    assert refusal is not None
    assert refusal.code is ErrorCode.NOT_AVAILABLE


# -- restart ---------------------------------------------------------------------------


def test_restart_with_an_attempt_in_progress_and_attempts_left_may_go_ahead() -> None:
    assert decide_restart(active=started(), used=1, max_attempts=2) is None


@pytest.mark.parametrize("active", [None, "completed", "abandoned"])
def test_restart_without_an_attempt_in_progress_gets_no_active_session(
    active: str | None,
) -> None:
    attempt = {None: None, "completed": completed(), "abandoned": abandon(started())}[
        active
    ]

    refusal = decide_restart(active=attempt, used=1, max_attempts=5)

    assert refusal == NO_ACTIVE
    assert refusal.code is ErrorCode.NO_ACTIVE_SESSION


def test_no_active_session_wins_over_exhausted() -> None:
    assert decide_restart(active=None, used=9, max_attempts=1) == NO_ACTIVE


def test_restart_after_the_invitation_was_revoked_is_not_found() -> None:
    refusal = decide_restart(active=started(), used=1, max_attempts=5, invited=False)

    assert refusal == NOT_FOUND


def test_restart_of_an_archived_interview_is_not_available() -> None:
    refusal = decide_restart(active=started(), used=1, max_attempts=5, archived_at=T0)

    assert refusal is not None
    assert (refusal.code, refusal.closes_at) == (ErrorCode.NOT_AVAILABLE, T0)


def test_restart_without_an_attempt_is_no_active_session_even_when_archived() -> None:
    refusal = decide_restart(
        active=None, used=1, max_attempts=5, invited=False, archived_at=T0
    )

    assert refusal == NO_ACTIVE


def test_restart_with_no_attempts_left_gets_attempts_exhausted() -> None:
    refusal = decide_restart(active=started(), used=1, max_attempts=1)

    assert refusal == EXHAUSTED


def test_refusal_messages_say_what_to_do() -> None:
    assert "resume" in IN_PROGRESS.message
    assert all(
        refusal.message for refusal in (NOT_FOUND, IN_PROGRESS, EXHAUSTED, NO_ACTIVE)
    )


# -- admit: the facts in, the new attempt or the refusal out ---------------------------


def definition(max_attempts: int = 2) -> InterviewDefinition:
    return parse_definition(
        {
            "title": "Backend interview",
            "settings": {"max_attempts": max_attempts, "grace_s": 3},
            "questions": [
                {
                    "type": "short_answer",
                    "text": "Why?",
                    "points": 5,
                    "time_limit_s": 30,
                },
                {
                    "type": "short_answer",
                    "text": "How?",
                    "points": 5,
                    "time_limit_s": 45,
                },
            ],
        }
    )


def admit(
    *,
    found: bool = True,
    invited: bool = True,
    active: Attempt | None = None,
    used: int = 0,
    max_attempts: int = 2,
) -> Attempt | Refusal:
    return admit_start(
        interview_id=InterviewId("i-9"),
        definition=definition(max_attempts) if found else None,
        candidate_id=UserId("c-9"),
        invited=invited,
        active=active,
        used=used,
        session_id=SessionId("s-new"),
        now=T0 + 5,
    )


def test_an_admitted_start_begins_the_next_attempt_of_the_interview() -> None:
    attempt = admit(used=1)

    assert isinstance(attempt, Attempt)
    assert attempt.session_id == "s-new"
    assert attempt.interview_id == "i-9"
    assert attempt.candidate_id == "c-9"
    assert attempt.title == "Backend interview"
    assert attempt.number == 2
    assert attempt.questions == definition().question_views()
    assert attempt.grace_ms == 3_000
    assert attempt.started_at == attempt.question_started_at == T0 + 5
    assert attempt.status is Status.IN_PROGRESS


def test_a_start_of_an_interview_that_does_not_exist_gets_not_found() -> None:
    assert admit(found=False) == NOT_FOUND
    assert admit(found=False, invited=False) == NOT_FOUND


def test_a_start_without_an_invitation_gets_not_found() -> None:
    assert admit(invited=False) == NOT_FOUND


def test_a_start_refusals_follow_decide_start() -> None:
    assert admit(active=started()) == IN_PROGRESS
    assert admit(used=2, max_attempts=2) == EXHAUSTED


def test_the_default_of_one_attempt_allows_a_single_start() -> None:
    question = {"type": "short_answer", "text": "q", "points": 1, "time_limit_s": 9}
    one = parse_definition({"title": "t", "questions": [question]})

    def start(used: int) -> Attempt | Refusal:
        return admit_start(
            interview_id=InterviewId("i-1"),
            definition=one,
            candidate_id=UserId("c-1"),
            invited=True,
            active=None,
            used=used,
            session_id=SessionId("s-1"),
            now=T0,
        )

    assert isinstance(start(0), Attempt)
    assert start(1) == EXHAUSTED


def readmit(
    active: Attempt | None, *, found: bool = True, used: int = 1
) -> Attempt | Refusal:
    return admit_restart(
        active=active,
        definition=definition(2) if found else None,
        used=used,
        session_id=SessionId("s-next"),
        now=T0 + 9,
    )


def test_an_admitted_restart_begins_the_next_attempt_with_what_was_shown() -> None:
    active = started()

    attempt = readmit(active, used=1)

    assert isinstance(attempt, Attempt)
    assert attempt.session_id == "s-next"
    assert attempt.number == 2
    assert (attempt.interview_id, attempt.candidate_id, attempt.title) == (
        active.interview_id,
        active.candidate_id,
        active.title,
    )
    assert attempt.questions == active.questions
    assert attempt.grace_ms == active.grace_ms
    assert attempt.started_at == T0 + 9


def test_a_restart_without_an_attempt_in_progress_gets_no_active_session() -> None:
    assert readmit(None, found=False, used=0) == NO_ACTIVE
    assert readmit(completed()) == NO_ACTIVE


def test_a_restart_whose_interview_is_gone_has_no_attempt_left() -> None:
    assert readmit(started(), found=False) == EXHAUSTED


def test_a_restart_with_every_attempt_used_gets_attempts_exhausted() -> None:
    assert readmit(started(), used=2) == EXHAUSTED


def test_admission_refuses_a_start_or_restart_of_an_archived_interview() -> None:
    start = admit_start(
        interview_id=InterviewId("i-9"),
        definition=definition(),
        candidate_id=UserId("c-9"),
        invited=True,
        active=None,
        used=0,
        session_id=SessionId("s-new"),
        now=T0,
        archived_at=T0 - 1,
    )
    restart = admit_restart(
        active=started(),
        definition=definition(),
        used=1,
        session_id=SessionId("s-next"),
        now=T0,
        archived_at=T0 - 1,
    )

    assert start == restart
    assert isinstance(start, Refusal)
    assert (start.code, start.closes_at) == (ErrorCode.NOT_AVAILABLE, T0 - 1)


def test_admission_refuses_a_restart_after_the_invitation_was_revoked() -> None:
    refusal = admit_restart(
        active=started(),
        definition=definition(),
        used=1,
        session_id=SessionId("s-next"),
        now=T0,
        invited=False,
    )

    assert refusal == NOT_FOUND
