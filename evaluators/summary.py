"""The summary of an attempt: totals by code, words and recommendation by the model.

Total, maximum and percentage are computed here, for every summary and for the
stored totals alike (:func:`totals`, :func:`percentage`: rounded to
``PERCENTAGE_DIGITS`` decimals), and so are the score thresholds of the
recommendation when code, not a model, picks it (:func:`recommendation_for`).

The model sees the structured per-question results (type, difficulty, points, score,
status, highlights), never the answers, and writes 3 to 4 sentences with a
recommendation. Longer text is cut to its first four sentences; the raw judgement is
kept for the audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from evaluators._judgement import ask
from evaluators.completer import Completer
from evaluators.grade import QuestionResult, Recommendation, Summary
from evaluators.prompts import Delimiters, random_delimiter, summary_prompt

MAX_SENTENCES = 4
PERCENTAGE_DIGITS = 2
THRESHOLDS = (
    (85.0, Recommendation.STRONG_HIRE),
    (70.0, Recommendation.HIRE),
    (50.0, Recommendation.MAYBE),
)
"""The percentage from which each recommendation applies when code picks it; below
the last one, ``no_hire``."""


class SummaryJudgement(BaseModel):
    """What the model must answer (sent as a strict JSON schema)."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1)
    recommendation: Recommendation


def percentage(total: float, maximum: float) -> float:
    """``total`` as a percentage of ``maximum``, rounded to ``PERCENTAGE_DIGITS``
    decimals; 0 when the maximum is."""
    return round(100 * total / maximum, PERCENTAGE_DIGITS) if maximum else 0.0


def totals(results: Sequence[QuestionResult]) -> tuple[float, float, float]:
    """``(total, maximum, percentage)`` of an attempt's results (see
    :func:`percentage`)."""
    total = sum(result.score for result in results)
    maximum = sum(result.points for result in results)
    return total, maximum, percentage(total, maximum)


def recommendation_for(percentage: float) -> Recommendation:
    """The recommendation code gives a percentage (see ``THRESHOLDS``)."""
    for threshold, recommendation in THRESHOLDS:
        if percentage >= threshold:
            return recommendation
    return Recommendation.NO_HIRE


def result_view(result: QuestionResult) -> dict[str, object]:
    """What the model is shown of one question."""
    return {
        "index": result.index,
        "type": result.type,
        "difficulty": result.difficulty,
        "points": result.points,
        "score": result.score,
        "status": result.status,
        "time_expired": result.time_expired,
        "highlights": list(result.highlights),
    }


def first_sentences(text: str, count: int = MAX_SENTENCES) -> str:
    """The first ``count`` sentences of ``text``."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(sentences[:count])


class SummaryWriter:
    """Writes attempt summaries with a model (see the module docstring).

    Args:
        completer: reaches the model.
        model: the litellm model string for summaries.
        delimiters: draws the fence token of each call.
    """

    def __init__(
        self,
        completer: Completer,
        model: str,
        *,
        delimiters: Delimiters = random_delimiter,
    ) -> None:
        self._completer = completer
        self._model = model
        self._delimiters = delimiters

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        """Summarise one attempt.

        Raises:
            ModelUnavailable: the model did not answer.
            UnparsableOutput: it answered outside the schema.
        """
        total, maximum, share = totals(results)
        prompt = summary_prompt(
            title=title,
            results=[result_view(result) for result in results],
            total=total,
            max_score=maximum,
            percentage=share,
            delimiters=self._delimiters,
        )
        judgement, completion = await ask(
            self._completer, self._model, prompt, SummaryJudgement
        )
        return Summary(
            total=total,
            max_score=maximum,
            percentage=share,
            text=first_sentences(judgement.summary),
            recommendation=judgement.recommendation,
            model=completion.model,
            prompt_version=prompt.version,
            raw=completion.text,
        )
