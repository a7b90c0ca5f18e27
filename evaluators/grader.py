"""The :class:`evaluators.grade.Grader` the server calls: one grader per question type.

Each task (short answer, code, summary) is graded by its model when one is
configured, and by the offline grader otherwise; multiple choice never needs a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import assert_never

from evaluators.code import CodeGrader
from evaluators.grade import Grade, QuestionResult, Summary
from evaluators.mcq import grade_mcq
from evaluators.offline import (
    grade_code_offline,
    grade_short_answer_offline,
    summarise_offline,
)
from evaluators.sandbox import CodeRunner
from evaluators.short_answer import ShortAnswerGrader
from evaluators.summary import SummaryWriter
from protocol.definition import (
    CodeQuestion,
    McqQuestion,
    QuestionDef,
    ShortAnswerQuestion,
)


class TaskGrader:
    """Dispatches each question to its grader; ``None`` means offline.

    Args:
        runner: runs code against hidden tests (offline grading uses it too).
        short_answer: the model grader of short answers, or ``None``.
        code: the model grader of code, or ``None``.
        summary: the model summary writer, or ``None``.
    """

    def __init__(
        self,
        runner: CodeRunner,
        *,
        short_answer: ShortAnswerGrader | None = None,
        code: CodeGrader | None = None,
        summary: SummaryWriter | None = None,
    ) -> None:
        self._runner = runner
        self._short_answer = short_answer
        self._code = code
        self._summary = summary

    @property
    def runner(self) -> CodeRunner:
        """What runs code against hidden tests."""
        return self._runner

    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        """Grade ``answer`` to ``question``; see :class:`evaluators.grade.Grader`.

        Raises:
            EvaluationError: see :mod:`evaluators.errors`.
        """
        if isinstance(question, McqQuestion):
            return grade_mcq(question, answer)
        if isinstance(question, ShortAnswerQuestion):
            if self._short_answer is None:
                # Up to a few hundred ms of text analysis for a long answer: in a
                # thread, so that the event loop (ticks, expiry) is not held.
                return await asyncio.to_thread(
                    grade_short_answer_offline, question, answer
                )
            return await self._short_answer.grade(question, answer)
        if isinstance(question, CodeQuestion):
            if self._code is None:
                return await grade_code_offline(question, answer, self._runner)
            return await self._code.grade(question, answer)
        assert_never(question)  # pragma: no cover - the union is exhaustive

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        """Summarise an attempt; see :class:`evaluators.grade.Grader`.

        Raises:
            EvaluationError: see :mod:`evaluators.errors`.
        """
        if self._summary is None:
            return summarise_offline(title=title, results=results)
        return await self._summary.summarise(title=title, results=results)
