"""The deterministic offline grader: what grades when no model is configured.

It stands in for the model in the embedded default and in tests (PRODUCT.md section 2),
and every grade it gives says so: ``model="offline"`` and a ``notice`` in the feedback.
Its short-answer and code grades stand where a model would have judged, so they are
*provisional* (``Grade.provisional`` and a ``review`` line in the feedback): the score
counts, and the results ask a recruiter to confirm or override it.

- Short answer: the share of expected keywords the answer uses in its own sentences
  gives all the points, scaled down for answers that are list-like, padded or off
  topic (``evaluators/keywords.py``: listing words earns nothing); without keywords,
  the same with the reference answer's words of four letters or more; without
  either, 0, for a person to review.
- Code: the hidden tests' pass rate where the question has runnable tests; otherwise
  half the points if the answer is Python that compiles and defines a function.
- Summary: thresholds on the percentage pick the recommendation
  (``evaluators.summary.recommendation_for``: 85 strong_hire, 70 hire, 50 maybe),
  and the sentences are templates.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from evaluators.code import SANDBOX_LANGUAGES, run_tests, tests_feedback
from evaluators.grade import EvaluationStatus, Grade, QuestionResult, Summary
from evaluators.keywords import KeywordEvidence, keyword_evidence, words
from evaluators.sandbox import CodeRunner
from evaluators.summary import recommendation_for, totals
from protocol.definition import CodeQuestion, ShortAnswerQuestion

MODEL = "offline"
PROMPT_VERSION = "offline/2"
NOTICE = "graded offline: no model configured"
REVIEW = "provisional: a heuristic graded this answer; confirm or override the score"
REFERENCE_WORDS_PER_WORD = 2
STRUCTURE_SHARE = 0.5


def _grade(score: float, points: float, feedback: dict[str, object]) -> Grade:
    return Grade(
        score=min(max(score, 0.0), points),
        max_score=points,
        feedback={"notice": NOTICE, "review": REVIEW, **feedback},
        model=MODEL,
        prompt_version=PROMPT_VERSION,
        provisional=True,
    )


MAX_REFERENCE_WORDS = 100
"""Reference words searched for, the longest first: bounds the work per answer."""


def _reference_words(text: str) -> list[str]:
    found = {word for word in words(text) if len(word) >= 4}
    longest = sorted(found, key=lambda word: (-len(word), word))
    return sorted(longest[:MAX_REFERENCE_WORDS])


def grade_short_answer_offline(question: ShortAnswerQuestion, answer: str) -> Grade:
    """Grade a short answer without a model (see the module docstring)."""
    sample = question.sample_solution or ""
    topic = f"{question.text}\n{sample}"
    need = len(words(sample))
    if question.expected_keywords:
        evidence = keyword_evidence(
            question.expected_keywords, answer, topic=topic, need=need
        )
        return _grade(
            question.points * evidence.share(),
            question.points,
            {"method": "keywords", **_evidence_feedback(evidence)},
        )
    reference = _reference_words(sample)
    if not reference:
        return _grade(
            0.0,
            question.points,
            {"method": "none", "message": "no keywords or reference: review by hand"},
        )
    # Reference words are ordinary words, dense in any good sentence: no share
    # limit per sentence, and a looser density cap than keywords.
    evidence = keyword_evidence(
        reference,
        answer,
        topic=topic,
        need=need,
        max_share=1.0,
        words_per_keyword=REFERENCE_WORDS_PER_WORD,
    )
    return _grade(
        question.points * evidence.share(),
        question.points,
        {"method": "reference_words", "words_found": len(evidence.used),
         "words_total": len(reference), "factor": round(evidence.factor, 3),
         "reasons": list(evidence.reasons)},
    )  # fmt: skip


def _evidence_feedback(evidence: KeywordEvidence) -> dict[str, object]:
    return {
        "keywords_used": list(evidence.used),
        "keywords_listed": list(evidence.listed),
        "keywords_total": evidence.total,
        "factor": round(evidence.factor, 3),
        "reasons": list(evidence.reasons),
    }


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
    provisional = sum(1 for r in results if r.provisional)
    text = " ".join(
        [
            f"The candidate scored {total:g} of {maximum:g} points "
            f"({percentage:.1f}%) in {title}.",
            f"{full} of {len(results)} questions received full marks, and {review} "
            f"await review ({provisional} with a provisional score).",
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
