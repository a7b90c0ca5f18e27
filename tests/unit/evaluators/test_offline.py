"""The offline grader (evaluators/offline.py), alone and through build_grader."""

from __future__ import annotations

import pytest

from evaluators import GraderConfig, build_grader
from evaluators.grade import EvaluationStatus, QuestionResult, Recommendation
from evaluators.offline import (
    MAX_REFERENCE_WORDS,
    MODEL,
    NOTICE,
    REVIEW,
    grade_code_offline,
    grade_short_answer_offline,
    summarise_offline,
)
from evaluators.summary import recommendation_for
from tests.unit.evaluators import _answers as answers
from tests.unit.evaluators._answers import KEYWORDS, SAMPLE, index_question
from tests.unit.evaluators._fakes import (
    FakeCompleter,
    FakeRunner,
    code,
    mcq,
    short_answer,
)

EVALUATED = EvaluationStatus.EVALUATED
NEEDS_REVIEW = EvaluationStatus.NEEDS_REVIEW


def test_short_answers_are_graded_by_keyword_coverage() -> None:
    answer = "Atomicity means that a transaction happens completely or not at all."

    grade = grade_short_answer_offline(short_answer(points=10), answer)

    assert grade.score == 5
    assert grade.model == MODEL == "offline"
    assert grade.feedback["notice"] == NOTICE == "graded offline: no model configured"
    assert grade.raw is None


@pytest.mark.parametrize(
    "answer",
    [
        answers.GENERIC_LIST,
        answers.PASTED,
        answers.PASTED_LINES,
        answers.REPEATED,
        answers.TEMPLATED,
        answers.SENTENCE_THEN_LIST,
    ],
    ids=["56 generic words", "keywords", "keyword lines", "repeated", "templated",
         "a sentence then a list"],
)  # fmt: skip
def test_listing_words_earns_at_most_a_tenth(answer: str) -> None:
    grade = grade_short_answer_offline(index_question(points=10), answer)

    assert grade.score <= 1
    assert grade.feedback["reasons"]


def test_listed_keywords_are_named_in_the_feedback() -> None:
    grade = grade_short_answer_offline(index_question(), answers.GENERIC_LIST)

    assert grade.score == 0
    assert grade.feedback["keywords_used"] == []
    assert grade.feedback["keywords_listed"] == list(KEYWORDS)
    assert grade.feedback["keywords_total"] == 4


@pytest.mark.parametrize(
    "answer",
    [answers.GOOD, answers.GOOD_BULLETS, answers.SHORT],
    ids=["paragraph", "bullets", "one sentence"],
)
def test_genuine_answers_still_get_full_marks(answer: str) -> None:
    grade = grade_short_answer_offline(index_question(points=10), answer)

    assert grade.score == 10
    assert grade.feedback["keywords_used"] == list(KEYWORDS)
    assert grade.feedback["reasons"] == []


@pytest.mark.parametrize(
    ("answer", "at_most"),
    [("", 0), (answers.OFF_TOPIC, 0), (answers.OFF_TOPIC_WITH_KEYWORDS, 3)],
    ids=["empty", "off-topic essay", "off-topic essay with a keyword sentence"],
)
def test_empty_and_off_topic_answers_earn_little(answer: str, at_most: float) -> None:
    grade = grade_short_answer_offline(index_question(points=10), answer)

    assert grade.score <= at_most


def test_offline_grades_are_provisional_where_a_model_would_have_judged() -> None:
    short = grade_short_answer_offline(index_question(), answers.GOOD)

    assert short.provisional is True
    assert short.feedback["review"] == REVIEW
    assert "confirm or override" in REVIEW


async def test_offline_code_grades_are_provisional_and_mcq_grades_are_not() -> None:
    grader = build_grader(GraderConfig(), runner=FakeRunner())

    written = await grader.grade(code(), "def add(a, b): return a + b")
    chosen = await grader.grade(mcq(), "b")

    assert written.provisional is True
    assert chosen.provisional is False


def test_a_list_of_the_reference_words_earns_nothing() -> None:
    question = short_answer([], points=10, sample_solution=SAMPLE)

    listed = grade_short_answer_offline(question, SAMPLE.replace(" ", ", "))
    genuine = grade_short_answer_offline(question, answers.GOOD)

    assert listed.score == 0
    assert genuine.score >= 3


def test_without_keywords_the_reference_words_are_compared() -> None:
    question = short_answer([], points=10, sample_solution="An index speeds lookups")

    grade = grade_short_answer_offline(question, "the INDEX is a thing")

    # reference words of 4+ letters: index, speeds, lookups -> 1 of 3
    assert grade.score == pytest.approx(10 / 3)
    assert grade.feedback["method"] == "reference_words"


def test_with_nothing_to_compare_the_answer_scores_zero_for_review() -> None:
    grade = grade_short_answer_offline(short_answer([]), "whatever")

    assert grade.score == 0
    assert grade.feedback["method"] == "none"


async def test_code_with_tests_scores_the_pass_rate() -> None:
    runner = FakeRunner(passed=1)

    grade = await grade_code_offline(code(points=20), "def add(a, b): ...", runner)

    assert grade.score == 5
    assert grade.feedback["method"] == "tests"
    assert runner.codes == ["def add(a, b): ..."]


@pytest.mark.parametrize(
    ("answer", "language", "score"),
    [
        ("def add(a, b):\n    return a + b", "python", 10),
        ("add = lambda a, b: a + b", "python", 0),
        ("def add(a, b) return", "python", 0),
        ("func add() {}", "go", 0),
    ],
)
async def test_code_without_tests_gets_half_for_a_defined_function(
    answer: str, language: str, score: float
) -> None:
    question = code(points=20, tests=False, language=language)

    grade = await grade_code_offline(question, answer, FakeRunner())

    assert grade.score == score
    assert grade.feedback["method"] == "structure"


@pytest.mark.parametrize(
    ("percentage", "recommendation"),
    [
        (100, Recommendation.STRONG_HIRE),
        (85, Recommendation.STRONG_HIRE),
        (84.9, Recommendation.HIRE),
        (70, Recommendation.HIRE),
        (50, Recommendation.MAYBE),
        (49.9, Recommendation.NO_HIRE),
        (0, Recommendation.NO_HIRE),
    ],
)
def test_recommendations_follow_the_thresholds(
    percentage: float, recommendation: Recommendation
) -> None:
    assert recommendation_for(percentage) is recommendation


def test_the_offline_summary_says_where_it_came_from() -> None:
    results = [
        QuestionResult(0, "mcq", "easy", 5, 5, EVALUATED, False),
        QuestionResult(1, "code", "hard", 15, 0, NEEDS_REVIEW, True),
    ]

    summary = summarise_offline(title="Backend", results=results)

    assert (summary.total, summary.max_score, summary.percentage) == (5, 20, 25)
    assert summary.recommendation is Recommendation.NO_HIRE
    assert summary.model == "offline"
    assert NOTICE in summary.text
    assert summary.text.count(". ") + 1 == 3
    assert "1 of 2 questions received full marks, and 1 await review" in summary.text


def test_the_offline_summary_counts_the_provisional_scores() -> None:
    results = [
        QuestionResult(
            0, "short_answer", "easy", 5, 5, EvaluationStatus.EVALUATED, False
        ),
        QuestionResult(
            1, "code", "hard", 15, 5, EvaluationStatus.EVALUATED, False, (), True
        ),
    ]

    summary = summarise_offline(title="Backend", results=results)

    assert "(1 with a provisional score)" in summary.text


async def test_build_grader_without_models_grades_offline_and_never_asks() -> None:
    completer = FakeCompleter()
    grader = build_grader(GraderConfig(), completer=completer, runner=FakeRunner())

    short = await grader.grade(
        short_answer(),
        "Atomicity makes a transaction all or nothing, and isolation keeps "
        "concurrent transactions from seeing each other's partial work.",
    )
    written = await grader.grade(code(), "def add(a, b): return a + b")
    summary = await grader.summarise(title="t", results=[])

    assert (short.model, written.model, summary.model) == ("offline",) * 3
    assert short.score == 10 and written.score == 20
    assert completer.requests == []


def test_at_most_the_longest_reference_words_are_searched_for() -> None:
    sample = " ".join(f"word{i:03d}" + "x" * (i % 7) for i in range(600))
    question = short_answer((), sample_solution=sample)

    grade = grade_short_answer_offline(question, "The word000 is used here well.")

    assert grade.feedback["words_total"] == MAX_REFERENCE_WORDS
