"""Short answers: keywords for half the points, the model's judgement for the rest.

As in the seed (Phase 4), half of the points come from the expected keywords, each
found as a whole word, case-insensitively, and half from the model's semantic score,
clamped to that half. With no keywords the model judges all of the points, instead of
the seed's division by zero (PRODUCT.md section 6, item 8).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from evaluators._judgement import ask, clamp
from evaluators.completer import Completer
from evaluators.grade import Grade
from evaluators.prompts import Delimiters, random_delimiter, short_answer_prompt
from protocol.definition import ShortAnswerQuestion


class ShortAnswerJudgement(BaseModel):
    """What the model must answer (sent as a strict JSON schema)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    semantic_score: float
    feedback: str
    strengths: list[str]
    improvements: list[str]


def keywords_found(keywords: Sequence[str], answer: str) -> list[str]:
    """The keywords that occur in ``answer`` as whole words, ignoring case.

    "Whole word" means not preceded or followed by a letter, digit or underscore, so
    that keywords ending in punctuation ("c++", "b-tree") still match, and "index"
    does not match "indexes".
    """
    return [
        keyword
        for keyword in keywords
        if re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", answer, re.IGNORECASE)
    ]


def keyword_score(question: ShortAnswerQuestion, found: Sequence[str]) -> float:
    """Half the points times the share of keywords found (0 without keywords)."""
    keywords = question.expected_keywords
    if not keywords:
        return 0.0
    return question.points / 2 * len(found) / len(keywords)


class ShortAnswerGrader:
    """Grades short answers with a model (see the module docstring).

    Args:
        completer: reaches the model.
        model: the litellm model string for short answers.
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

    async def grade(self, question: ShortAnswerQuestion, answer: str) -> Grade:
        """Grade ``answer``; the score is clamped to the question's points.

        Raises:
            ModelUnavailable: the model did not answer.
            UnparsableOutput: it answered outside the schema.
        """
        found = keywords_found(question.expected_keywords, answer)
        by_keywords = keyword_score(question, found)
        keyword_max = question.points / 2 if question.expected_keywords else 0.0
        semantic_max = question.points - keyword_max
        prompt = short_answer_prompt(
            question=question.text,
            answer=answer,
            max_score=semantic_max,
            keywords=question.expected_keywords,
            sample_solution=question.sample_solution,
            delimiters=self._delimiters,
        )
        judgement, completion = await ask(
            self._completer, self._model, prompt, ShortAnswerJudgement
        )
        semantic = clamp(judgement.semantic_score, semantic_max)
        feedback: dict[str, object] = {
            "keyword_score": by_keywords,
            "semantic_score": semantic,
            "semantic_max": semantic_max,
            "keywords_found": found,
            "keywords_total": len(question.expected_keywords),
            "model_feedback": judgement.feedback,
            "strengths": judgement.strengths,
            "improvements": judgement.improvements,
            "clamped": semantic != judgement.semantic_score,
        }
        return Grade(
            score=clamp(by_keywords + semantic, question.points),
            max_score=question.points,
            feedback=feedback,
            model=completion.model,
            prompt_version=prompt.version,
            raw=completion.text,
        )
