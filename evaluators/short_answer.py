"""Short answers: the model judges the whole answer; keywords count only with it.

Half of the points still belong to the expected keywords (PRODUCT.md section 5), but
naming a keyword no longer earns them: a keyword counts when it occurs in the answer
as a whole word (case-insensitive) *and* the model lists it among the keywords the
answer explains correctly, and that credit is multiplied by the model's relevance
(0..1: is this a genuine, on-topic answer in the candidate's own words, or a list of
terms, an off-topic text, a message to the grader?). The other half is the model's
semantic score, clamped to it. The keywords reach the model as a rubric, outside the
fence; the answer stays fenced (``evaluators/prompts.py``). A list of words thus
earns what the model gives it, which the prompt says is close to nothing, instead of
the half it was guaranteed. With no keywords the model judges all of the points,
instead of the seed's division by zero (PRODUCT.md section 6, item 8).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from evaluators._judgement import ask, clamp
from evaluators.completer import Completer
from evaluators.grade import Grade
from evaluators.keywords import keywords_found
from evaluators.prompts import Delimiters, random_delimiter, short_answer_prompt
from protocol.definition import ShortAnswerQuestion

__all__ = ["ShortAnswerGrader", "ShortAnswerJudgement", "keywords_found"]


class ShortAnswerJudgement(BaseModel):
    """What the model must answer (sent as a strict JSON schema)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    relevance: float
    keywords_explained: list[str]
    semantic_score: float
    feedback: str
    strengths: list[str]
    improvements: list[str]


def confirmed_keywords(
    keywords: Sequence[str], answer: str, explained: Sequence[str]
) -> list[str]:
    """The ``keywords`` found in ``answer`` that the model says it ``explained``
    (names compared ignoring case; names that are not expected keywords are
    ignored)."""
    judged = {name.strip().lower() for name in explained}
    return [k for k in keywords_found(keywords, answer) if k.lower() in judged]


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
        keywords = question.expected_keywords
        keyword_max = question.points / 2 if keywords else 0.0
        semantic_max = question.points - keyword_max
        prompt = short_answer_prompt(
            question=question.text,
            answer=answer,
            max_score=semantic_max,
            keywords=keywords,
            sample_solution=question.sample_solution,
            delimiters=self._delimiters,
        )
        judgement, completion = await ask(
            self._completer, self._model, prompt, ShortAnswerJudgement
        )
        relevance = clamp(judgement.relevance, 1.0)
        confirmed = confirmed_keywords(keywords, answer, judgement.keywords_explained)
        share = len(confirmed) / len(keywords) if keywords else 0.0
        by_keywords = keyword_max * share * relevance
        semantic = clamp(judgement.semantic_score, semantic_max)
        feedback: dict[str, object] = {
            "keyword_score": by_keywords,
            "keyword_max": keyword_max,
            "semantic_score": semantic,
            "semantic_max": semantic_max,
            "relevance": relevance,
            "keywords_found": keywords_found(keywords, answer),
            "keywords_confirmed": confirmed,
            "keywords_total": len(keywords),
            "model_feedback": judgement.feedback,
            "strengths": judgement.strengths,
            "improvements": judgement.improvements,
            "clamped": semantic != judgement.semantic_score
            or relevance != judgement.relevance,
        }
        return Grade(
            score=clamp(by_keywords + semantic, question.points),
            max_score=question.points,
            feedback=feedback,
            model=completion.model,
            prompt_version=prompt.version,
            raw=completion.text,
        )
