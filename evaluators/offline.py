"""The deterministic offline grader: what grades when no model is configured.

It stands in for the model in the embedded default and in tests (PRODUCT.md section 2),
and every grade it gives says so: ``model="offline"`` and a ``notice`` in the feedback.

- Short answer: the share of expected keywords found (whole words, any case) gives
  all the points; without keywords, the share of the reference answer's words of four
  letters or more found in the answer; without either, 0, for a person to review.
- Code: the hidden tests' pass rate where the question has runnable tests; otherwise
  half the points if the answer is Python that compiles and defines a function.
- Summary: thresholds on the percentage pick the recommendation
  (``evaluators.summary.recommendation_for``: 85 strong_hire, 70 hire, 50 maybe),
  and the sentences are templates.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from evaluators.code import SANDBOX_LANGUAGES, run_tests, tests_feedback
from evaluators.grade import EvaluationStatus, Grade, QuestionResult, Summary
from evaluators.sandbox import CodeRunner
from evaluators.short_answer import keywords_found
from evaluators.summary import recommendation_for, totals
from protocol.definition import CodeQuestion, ShortAnswerQuestion

MODEL = "offline"
PROMPT_VERSION = "offline/1"
NOTICE = "graded offline: no model configured"
STRUCTURE_SHARE = 0.5


def _grade(score: float, points: float, feedback: dict[str, object]) -> Grade:
    return Grade(
        score=min(max(score, 0.0), points),
        max_score=points,
        feedback={"notice": NOTICE, **feedback},
        model=MODEL,
        prompt_version=PROMPT_VERSION,
    )


def _words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"\w{4,}", text)}


def grade_short_answer_offline(question: ShortAnswerQuestion, answer: str) -> Grade:
    """Grade a short answer without a model (see the module docstring)."""
    if question.expected_keywords:
        found = keywords_found(question.expected_keywords, answer)
        share = len(found) / len(question.expected_keywords)
        return _grade(
            question.points * share,
            question.points,
            {"method": "keywords", "keywords_found": found,
             "keywords_total": len(question.expected_keywords)},
        )  # fmt: skip
    reference = _words(question.sample_solution or "")
    if not reference:
        return _grade(
            0.0,
            question.points,
            {"method": "none", "message": "no keywords or reference: review by hand"},
        )
    shared = reference & _words(answer)
    return _grade(
        question.points * len(shared) / len(reference),
        question.points,
        {"method": "reference_words", "words_found": len(shared),
         "words_total": len(reference)},
    )  # fmt: skip


async def grade_code_offline(
    question: CodeQuestion, answer: str, runner: CodeRunner
) -> Grade:
    """Grade code without a model (see the module docstring).

    Raises:
        SandboxUnavailable: the question has tests but the sandbox could not run.
    """
    report = await run_tests(runner, question, answer)
    if report is not None:
        return _grade(
            question.points * report.pass_rate,
            question.points,
            {"method": "tests", "tests": report.feedback()},
        )
    python = question.language.lower() in SANDBOX_LANGUAGES
    defines = python and _defines_function(answer)
    return _grade(
        question.points * STRUCTURE_SHARE if defines else 0.0,
        question.points,
        {"method": "structure", "defines_function": defines,
         "tests": tests_feedback(question, None)},
    )  # fmt: skip


def _defines_function(answer: str) -> bool:
    try:
        tree = ast.parse(answer)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.FunctionDef) for node in ast.walk(tree))


def summarise_offline(*, title: str, results: Sequence[QuestionResult]) -> Summary:
    """Summarise an attempt without a model, in three templated sentences."""
    total, maximum, percentage = totals(results)
    recommendation = recommendation_for(percentage)
    full = sum(1 for r in results if r.points and r.score >= r.points)
    review = sum(1 for r in results if r.status is EvaluationStatus.NEEDS_REVIEW)
    text = " ".join(
        [
            f"The candidate scored {total:g} of {maximum:g} points "
            f"({percentage:.1f}%) in {title}.",
            f"{full} of {len(results)} questions received full marks, and {review} "
            "await review.",
            f"Offline recommendation: {recommendation.value} ({NOTICE}).",
        ]
    )
    return Summary(
        total=total,
        max_score=maximum,
        percentage=percentage,
        text=text,
        recommendation=recommendation,
        model=MODEL,
        prompt_version=PROMPT_VERSION,
    )
