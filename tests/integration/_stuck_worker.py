"""A grading worker whose grader never answers, run as a child process and killed.

``python -m tests.integration._stuck_worker`` with ``DATABASE_URL``, ``REDIS_URL``
and ``REDIS_PREFIX`` set: it takes tasks and never finishes one, so the test can kill
it while a task is unacknowledged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from evaluators.grade import Grade, QuestionResult, Summary
from protocol.definition import QuestionDef
from server.grading.queue import make_queue
from server.grading.worker import install_worker, run_worker
from server.settings import Settings


class StuckGrader:
    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        await asyncio.Event().wait()
        raise AssertionError("never answers")


async def main() -> None:
    settings = Settings.from_environ(os.environ)
    queue = make_queue(settings)
    install_worker(queue, settings, grader=StuckGrader())
    await run_worker(queue, asyncio.Event(), concurrency=settings.grading_concurrency)


if __name__ == "__main__":
    asyncio.run(main())
