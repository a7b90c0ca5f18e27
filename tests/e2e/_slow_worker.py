"""``interview-server worker`` whose grades take a while, as a model's do.

``python -m tests.e2e._slow_worker`` with the worker's environment: the CLI's worker
(:func:`server.grading.worker.main`: the same broker, leases, signals) around the
offline grader, each grade and summary taking ``SLOW_GRADE_S`` (a model's round
trip), so that a worker killed with SIGKILL is holding jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from evaluators.grade import Grade, Grader, QuestionResult, Summary
from protocol.definition import QuestionDef
from server.grading.worker import grader_from_settings, main
from server.settings import Settings

SLOW_GRADE_S = 0.3


class SlowGrader:
    def __init__(self, grader: Grader, delay_s: float) -> None:
        self.grader = grader
        self.delay_s = delay_s

    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        await asyncio.sleep(self.delay_s)  # the model's round trip
        return await self.grader.grade(question, answer)

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        await asyncio.sleep(self.delay_s)
        return await self.grader.summarise(title=title, results=results)


if __name__ == "__main__":
    settings = Settings.from_environ(os.environ)
    logging.basicConfig(level=settings.log_level)
    main(settings, grader=SlowGrader(grader_from_settings(settings), SLOW_GRADE_S))
