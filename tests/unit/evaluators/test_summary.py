"""Summaries (evaluators/summary.py)."""

from __future__ import annotations

import pytest

from evaluators.errors import UnparsableOutput
from evaluators.grade import EvaluationStatus, QuestionResult, Recommendation
from evaluators.prompts import SUMMARY_VERSION
from evaluators.summary import (
    PERCENTAGE_DIGITS,
    SummaryJudgement,
    SummaryWriter,
    first_sentences,
    percentage,
    recommendation_for,
    totals,
)
from tests.unit.evaluators._fakes import FakeCompleter, counting_delimiters

MODEL = "openai/summary"
EVALUATED = EvaluationStatus.EVALUATED
NEEDS_REVIEW = EvaluationStatus.NEEDS_REVIEW
RESULTS = (
    QuestionResult(0, "mcq", "easy", 5, 5, EVALUATED, False),
    QuestionResult(1, "short_answer", "medium", 10, 4, EVALUATED, False, ("brief",)),
    QuestionResult(2, "code", "hard", 25, 0, NEEDS_REVIEW, True),
)


def writer(completer: FakeCompleter) -> SummaryWriter:
    return SummaryWriter(completer, MODEL, delimiters=counting_delimiters())


def test_totals_are_computed_by_code() -> None:
    assert totals(RESULTS) == (9, 40, 22.5)
    assert totals(()) == (0, 0, 0)


async def test_the_model_writes_the_text_and_picks_the_recommendation() -> None:
    text = "Solid basics. Weak on code. Needs practice."
    completer = FakeCompleter({"summary": text, "recommendation": "maybe"})

    summary = await writer(completer).summarise(title="Backend", results=RESULTS)

    assert (summary.total, summary.max_score, summary.percentage) == (9, 40, 22.5)
    assert summary.text == text
    assert summary.recommendation is Recommendation.MAYBE
    assert (summary.model, summary.prompt_version) == (MODEL, SUMMARY_VERSION)
    assert summary.raw is not None and "maybe" in summary.raw
    assert completer.requests[0].schema is SummaryJudgement


async def test_the_model_sees_structured_results_fenced() -> None:
    completer = FakeCompleter({"summary": "Fine.", "recommendation": "hire"})

    await writer(completer).summarise(title="Backend", results=RESULTS)

    prompt = completer.prompt
    assert "Total score: 9/40 (22.5%)" in prompt
    assert '"status": "needs_review"' in prompt
    assert '"brief"' in prompt
    assert prompt.index("<<<DATA d0>>>") < prompt.index('"difficulty"')
    assert "Position: Backend" in prompt


async def test_a_long_text_is_cut_to_four_sentences() -> None:
    text = "One. Two! Three? Four. Five. Six."
    completer = FakeCompleter({"summary": text, "recommendation": "hire"})

    summary = await writer(completer).summarise(title="t", results=RESULTS)

    assert summary.text == "One. Two! Three? Four."
    assert summary.raw is not None and "Six." in summary.raw


def test_first_sentences_keeps_short_texts() -> None:
    assert first_sentences("  Only one sentence  ") == "Only one sentence"


@pytest.mark.parametrize(
    "reply",
    [
        {"summary": "Good.", "recommendation": "definitely"},
        {"summary": "", "recommendation": "hire"},
        {"summary": "Good."},
        "[]",
    ],
)
async def test_an_invalid_summary_is_unparsable(reply: dict[str, str] | str) -> None:
    with pytest.raises(UnparsableOutput):
        await writer(FakeCompleter(reply)).summarise(title="t", results=RESULTS)


# -- totals: one rounding for every summary and the stored totals ----------------------


@pytest.mark.parametrize(
    ("total", "maximum", "expected"),
    [
        (1, 3, 33.33),  # rounded to two decimals, not kept at float precision
        (2, 3, 66.67),
        (1, 8, 12.5),
        (17, 17, 100.0),
        (0, 40, 0.0),
        (5, 0, 0.0),  # no points to score: 0, not a division by zero
    ],
)
def test_the_percentage_is_rounded_to_two_decimals(
    total: float, maximum: float, expected: float
) -> None:
    assert percentage(total, maximum) == expected
    assert PERCENTAGE_DIGITS == 2


def test_totals_add_scores_and_points_and_round_the_percentage() -> None:
    results = [
        QuestionResult(0, "mcq", "easy", 3, 1, EVALUATED, False),
        QuestionResult(1, "code", "hard", 0, 0, NEEDS_REVIEW, True),
    ]

    assert totals(results) == (1, 3, 33.33)


def test_the_recommendation_threshold_applies_to_the_rounded_percentage() -> None:
    # 84.996 % rounds to 85.0: the same recommendation whoever computes it
    results = [
        QuestionResult(0, "short_answer", "easy", 1000, 849.96, EVALUATED, False)
    ]

    _, _, share = totals(results)

    assert share == 85.0
    assert recommendation_for(share) is Recommendation.STRONG_HIRE


def test_evaluation_statuses_are_the_strings_stored_and_shown() -> None:
    assert [status.value for status in EvaluationStatus] == [
        "pending",
        "evaluated",
        "needs_review",
    ]
