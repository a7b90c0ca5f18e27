"""Multiple choice: the chosen option id against the key, full points or none."""

from __future__ import annotations

from evaluators.grade import Grade
from protocol.definition import McqQuestion

MODEL = "rule:mcq"
PROMPT_VERSION = "mcq/1"


def grade_mcq(question: McqQuestion, answer: str) -> Grade:
    """Grade an option id immediately, without a model (PRODUCT.md section 5).

    Args:
        answer: the chosen option id; surrounding whitespace is ignored.
    """
    chosen = answer.strip()
    correct = chosen == question.correct_answer
    feedback: dict[str, object] = {
        "correct": correct,
        "chosen": chosen,
        "correct_answer": question.correct_answer,
        "message": "correct"
        if correct
        else f"incorrect: the correct answer is {question.correct_answer}",
    }
    return Grade(
        score=question.points if correct else 0.0,
        max_score=question.points,
        feedback=feedback,
        model=MODEL,
        prompt_version=PROMPT_VERSION,
    )
