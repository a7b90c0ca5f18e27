"""Multiple choice (evaluators/mcq.py)."""

from __future__ import annotations

from evaluators.mcq import MODEL, grade_mcq
from tests.unit.evaluators._fakes import mcq


def test_the_correct_option_earns_full_points() -> None:
    grade = grade_mcq(mcq(points=5), "b")

    assert (grade.score, grade.max_score) == (5, 5)
    assert grade.feedback["correct"] is True
    assert grade.model == MODEL == "rule:mcq"
    assert grade.raw is None


def test_a_wrong_option_earns_nothing_and_names_the_correct_one() -> None:
    grade = grade_mcq(mcq(points=5), "a")

    assert grade.score == 0
    assert grade.feedback["correct"] is False
    assert grade.feedback["message"] == "incorrect: the correct answer is b"


def test_surrounding_whitespace_is_ignored_but_case_is_not() -> None:
    assert grade_mcq(mcq(), " b\n").score == 5
    assert grade_mcq(mcq(), "B").score == 0
