"""What graders produce, and the interface the server's grading pipeline calls.

Exception tree (``evaluators/errors.py``)::

    EvaluationError       grading failed; ``retryable`` says whether to try again
    ├── ModelUnavailable  the model did not answer (timeout, 429, 5xx): retryable
    └── UnparsableOutput  the model answered outside the schema: retried a few
                          times, then the answer goes to ``needs_review``
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol.definition import QuestionDef


class EvaluationStatus(enum.StrEnum):
    """Where the grading of one answer stands (PRODUCT.md section 5).

    It lives with the grades, not in ``protocol/``: the candidate protocol never sees
    grading, while graders (:class:`QuestionResult`), the summary and the server's
    grading tables all speak of it. Transitions (the server's grading store makes
    them)::

        pending      -> evaluated      a grade was stored
        pending      -> needs_review   grading failed for good: a person must look
        evaluated    -> pending        re-evaluation (the attempt is graded again)
        needs_review -> pending        re-evaluation
    """

    PENDING = "pending"
    EVALUATED = "evaluated"
    NEEDS_REVIEW = "needs_review"


class Recommendation(enum.StrEnum):
    STRONG_HIRE = "strong_hire"
    HIRE = "hire"
    MAYBE = "maybe"
    NO_HIRE = "no_hire"


@dataclass(frozen=True, slots=True)
class Grade:
    """The grade of one answer.

    ``score`` is already clamped to ``0..max_score``. ``feedback`` is JSON-serialisable
    and shown to recruiters (per-criterion scores, strengths, improvements, test
    results...). ``model`` names who graded (``"offline"`` for the offline grader,
    ``"rule:mcq"`` for exact matching), ``prompt_version`` the prompt template, ``raw``
    the model's raw judgement (``None`` without a model), for audit and re-runs.
    ``provisional`` is true when a heuristic graded where a model would have judged
    (the offline grader): the score stands, and recruiters are asked to confirm or
    override it.
    """

    score: float
    max_score: float
    feedback: Mapping[str, object]
    model: str
    prompt_version: str
    raw: str | None = None
    provisional: bool = False


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """What the summary model sees of one question: structured, never the raw answer.

    ``provisional``: the score is a heuristic's that no person has confirmed yet.
    """

    index: int
    type: str
    difficulty: str
    points: float
    score: float
    status: EvaluationStatus
    time_expired: bool
    highlights: Sequence[str] = field(default_factory=tuple)
    provisional: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    """The summary of a finished attempt; totals are computed by code, not the model."""

    total: float
    max_score: float
    percentage: float
    text: str
    recommendation: Recommendation
    model: str
    prompt_version: str
    raw: str | None = None


class Grader(Protocol):
    """Grades answers and summarises attempts; built by ``evaluators.build_grader``."""

    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        """Grade ``answer`` to ``question`` (which carries its keys and tests).

        Raises:
            EvaluationError: see the tree above.
        """
        ...

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        """Summarise an attempt from its per-question results.

        Raises:
            EvaluationError: see the tree above.
        """
        ...
