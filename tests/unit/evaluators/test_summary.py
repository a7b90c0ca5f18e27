"""Summaries (evaluators/summary.py)."""

from __future__ import annotations

import pytest

from evaluators.errors import UnparsableOutput
from evaluators.grade import QuestionResult, Recommendation
from evaluators.prompts import SUMMARY_VERSION
from evaluators.summary import (
    SummaryJudgement,
    SummaryWriter,
    first_sentences,
    totals,
)
from tests.unit.evaluators._fakes import FakeCompleter, counting_delimiters

MODEL = "openai/summary"
RESULTS = (
    QuestionResult(0, "mcq", "easy", 5, 5, "evaluated", False),
    QuestionResult(1, "short_answer", "medium", 10, 4, "evaluated", False, ("brief",)),
    QuestionResult(2, "code", "hard", 25, 0, "needs_review", True),
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
