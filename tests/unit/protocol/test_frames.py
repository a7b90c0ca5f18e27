"""What a candidate is shown of an attempt, and nothing more (protocol/frames.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from protocol import frames
from protocol.attempt import (
    Answer,
    Attempt,
    Draft,
    abandon,
    begin,
    expire_due,
    save_draft,
    submit,
)
from protocol.definition import InterviewDefinition, parse_definition
from protocol.ids import InterviewId, Millis, SessionId, UserId
from protocol.messages import Tick, serialize

T0: Millis = 1_700_000_000_000
GRACE: Millis = 2_000

SECRETS = [
    "SECRET-SAMPLE-SOLUTION",
    "SECRET-KEYWORD",
    "SECRET-CRITERION",
    "SECRET-TEST-ARG",
    "SECRET-EXPECTED",
]
HIDDEN_FIELDS = [
    "correct_answer",
    "sample_solution",
    "expected_keywords",
    "evaluation_criteria",
    "tests",
]


def definition() -> InterviewDefinition:
    """Three questions, each holding every kind of key a recruiter can write."""
    return parse_definition(
        {
            "title": "Backend interview",
            "settings": {"grace_s": 2},
            "questions": [
                {
                    "type": "mcq",
                    "text": "Which structure gives O(1) lookups?",
                    "points": 5,
                    "time_limit_s": 30,
                    "options": [
                        {"id": "a", "text": "a list"},
                        {"id": "b", "text": "a hash map"},
                    ],
                    "correct_answer": "b",
                },
                {
                    "type": "short_answer",
                    "text": "Explain idempotency.",
                    "points": 10,
                    "difficulty": "easy",
                    "time_limit_s": 60,
                    "expected_keywords": ["SECRET-KEYWORD"],
                    "sample_solution": "SECRET-SAMPLE-SOLUTION",
                },
                {
                    "type": "code",
                    "text": "Write add(a, b).",
                    "points": 20,
                    "difficulty": "hard",
                    "time_limit_s": 90,
                    "language": "python",
                    "sample_solution": "SECRET-SAMPLE-SOLUTION",
                    "evaluation_criteria": ["SECRET-CRITERION"],
                    "tests": {
                        "entrypoint": "add",
                        "cases": [
                            {
                                "args": ["SECRET-TEST-ARG", 1],
                                "expected": "SECRET-EXPECTED",
                            }
                        ],
                    },
                },
            ],
        }
    )


def started(now: Millis = T0) -> Attempt:
    interview = definition()
    return begin(
        session_id=SessionId("s-1"),
        interview_id=InterviewId("i-1"),
        title=interview.title,
        candidate_id=UserId("c-1"),
        number=1,
        questions=interview.question_views(),
        grace_ms=interview.settings.grace_ms,
        now=now,
    )


def at_question(index: int) -> Attempt:
    """The attempt with questions before ``index`` answered, one second each."""
    attempt = started()
    for answered in range(index):
        attempt = submit(attempt, answered, "x", T0 + 1_000 * (answered + 1)).attempt
    return attempt


def state(attempt: Attempt, now: Millis) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(frames.state(attempt, now, lease="l-1"))
    return parsed


# -- state -----------------------------------------------------------------------------


def test_state_describes_the_current_question_its_deadline_and_the_attempt() -> None:
    assert state(started(), T0 + 1_000) == {
        "type": "state",
        "session_id": "s-1",
        "interview": {"id": "i-1", "title": "Backend interview"},
        "status": "in_progress",
        "question_index": 0,
        "question_count": 3,
        "question": {
            "index": 0,
            "type": "mcq",
            "text": "Which structure gives O(1) lookups?",
            "options": [
                {"id": "a", "text": "a list"},
                {"id": "b", "text": "a hash map"},
            ],
            "language": None,
            "points": 5.0,
            "difficulty": "medium",
            "time_limit_s": 30,
        },
        "deadline": T0 + 30_000,
        "remaining_ms": 29_000,
        "server_time": T0 + 1_000,
        "draft": None,
        "attempt": 1,
        "lease": "l-1",
    }


def test_a_code_question_carries_its_language_and_no_options() -> None:
    question = state(at_question(2), T0 + 3_000)["question"]

    assert question["type"] == "code"
    assert question["language"] == "python"
    assert question["options"] is None


@pytest.mark.parametrize("index", [0, 1, 2])
def test_state_never_carries_keys_solutions_keywords_criteria_or_tests(
    index: int,
) -> None:
    text = frames.state(at_question(index), T0 + 5_000, lease="l-1")

    for secret in SECRETS:
        assert secret not in text
    for name in HIDDEN_FIELDS:
        assert f'"{name}"' not in text


@pytest.mark.parametrize("index", [0, 1, 2])
def test_state_carries_only_the_current_question(index: int) -> None:
    sent = state(at_question(index), T0 + 5_000)
    texts = [view.text for view in definition().question_views()]

    assert sent["question"]["index"] == index
    others = [text for number, text in enumerate(texts) if number != index]
    rendered = json.dumps(sent)
    assert all(text not in rendered for text in others)


def test_state_carries_the_draft_of_the_current_question() -> None:
    attempt = save_draft(started(), 0, "b?", T0 + 1_000).attempt

    assert state(attempt, T0 + 2_000)["draft"] == "b?"


def test_state_never_carries_a_draft_of_another_question() -> None:
    stale = Draft(question_index=0, text="for question 0", saved_at=T0 + 500)
    attempt = dataclasses.replace(at_question(1), draft=stale)

    assert state(attempt, T0 + 2_000)["draft"] is None


@pytest.mark.parametrize("late_by", [0, 1, 2_000, 10_000_000])
def test_remaining_ms_is_never_negative(late_by: Millis) -> None:
    attempt = started()

    assert state(attempt, attempt.deadline + late_by)["remaining_ms"] == 0


def test_state_of_a_completed_attempt_has_no_question_deadline_or_draft() -> None:
    attempt, _ = expire_due(started(), T0 + 10_000_000)

    sent = state(attempt, T0 + 10_000_000)

    assert sent["status"] == "completed"
    assert sent["question_index"] == 3
    assert sent["question"] is None
    assert sent["deadline"] is None
    assert sent["remaining_ms"] == 0
    assert sent["draft"] is None


def test_state_of_an_abandoned_attempt_has_no_question() -> None:
    sent = state(abandon(started()), T0 + 1)

    assert sent["status"] == "abandoned"
    assert sent["question"] is None


# -- tick ------------------------------------------------------------------------------


def test_tick_is_the_exact_tick_json() -> None:
    assert frames.tick(started(), T0 + 1_000) == (
        '{"type":"tick","question_index":0,"deadline":1700000030000,'
        '"remaining_ms":29000,"server_time":1700000001000}'
    )


@given(offset=st.integers(-1_000_000, 1_000_000))
def test_tick_equals_the_serialized_tick_model(offset: int) -> None:
    attempt = started()
    now = T0 + offset

    text = frames.tick(attempt, now)

    expected = Tick(
        question_index=0,
        deadline=attempt.deadline,
        remaining_ms=max(0, attempt.deadline - now),
        server_time=now,
    )
    assert text == serialize(expected)
    assert json.loads(text)["remaining_ms"] >= 0


# -- next_tick: when ticks fall due ---------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0, 1_000),  # the first whole interval before the deadline
        (999, 1_000),
        (1_000, 2_000),  # strictly after now
        (9_999, 10_000),  # the deadline itself
        (10_000, 11_000),  # at the deadline: one interval after it
        (10_001, 11_000),
        (12_500, 13_000),
    ],
)
def test_ticks_lie_a_whole_number_of_intervals_from_the_deadline(
    now: Millis, expected: Millis
) -> None:
    assert frames.next_tick(10_000, now, 1_000) == expected


def test_ticks_align_to_a_deadline_that_is_not_a_multiple_of_the_interval() -> None:
    assert frames.next_tick(10_250, 0, 1_000) == 250
    assert frames.next_tick(10_250, 250, 1_000) == 1_250


@given(
    deadline=st.integers(0, 10**13),
    offset=st.integers(-(10**7), 10**7),
    interval=st.integers(1, 10_000),
)
def test_the_next_tick_is_the_first_aligned_time_after_now(
    deadline: Millis, offset: int, interval: Millis
) -> None:
    now = deadline + offset

    tick = frames.next_tick(deadline, now, interval)

    assert now < tick <= now + interval
    assert (tick - deadline) % interval == 0


# -- time_expired, completed -----------------------------------------------------------


@pytest.mark.parametrize("had_draft", [False, True])
def test_time_expired_announces_the_question_and_whether_it_had_a_draft(
    had_draft: bool,
) -> None:
    answer = Answer(
        question_index=2,
        text="",
        submitted_at=T0,
        time_taken_ms=1,
        time_expired=True,
        had_draft=had_draft,
    )

    assert json.loads(frames.time_expired(answer)) == {
        "type": "time_expired",
        "question_index": 2,
        "auto_submitted": True,
        "had_draft": had_draft,
    }


def test_completed_names_the_session() -> None:
    assert json.loads(frames.completed(started())) == {
        "type": "completed",
        "session_id": "s-1",
        "message": frames.COMPLETED_MESSAGE,
    }


# -- active_session --------------------------------------------------------------------


def test_there_is_no_active_session_without_an_attempt() -> None:
    assert frames.active_session(None, T0) is None


def test_the_active_session_reports_the_current_question_and_remaining_time() -> None:
    session = frames.active_session(at_question(1), T0 + 11_000)

    assert session is not None
    assert session.model_dump() == {
        "session_id": "s-1",
        "interview_id": "i-1",
        "title": "Backend interview",
        "question_index": 1,
        "question_count": 3,
        "remaining_ms": 50_000,
    }


def test_the_active_session_counts_overdue_questions_as_expired() -> None:
    # question 0 (30 s) closes at T0 + 32 s; question 1 (60 s) is then current
    session = frames.active_session(started(), T0 + 32_001 + 15_000)

    assert session is not None
    assert session.question_index == 1
    assert session.remaining_ms == 60_000 - 15_001


def test_an_attempt_whose_every_question_is_overdue_is_not_active() -> None:
    assert frames.active_session(started(), T0 + 10_000_000) is None
