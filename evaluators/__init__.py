"""Graders of answers and attempts: :func:`build_grader` is the entry point.

The server builds a :class:`GraderConfig` from its settings and calls
:func:`build_grader` once; the result implements :class:`Grader`. Tasks without a
configured model are graded offline, deterministically, and their grades say so.
"""

from __future__ import annotations

from evaluators.code import CodeGrader
from evaluators.completer import Completer, Completion, CompletionRequest
from evaluators.config import GraderConfig
from evaluators.errors import (
    EvaluationError,
    ModelUnavailable,
    SandboxUnavailable,
    UnparsableOutput,
)
from evaluators.grade import (
    EvaluationStatus,
    Grade,
    Grader,
    QuestionResult,
    Recommendation,
    Summary,
)
from evaluators.grader import TaskGrader
from evaluators.litellm_adapter import LitellmCompleter, import_litellm
from evaluators.prompts import Delimiters, random_delimiter
from evaluators.sandbox import BubblewrapSandbox, CodeRunner, SandboxLimits
from evaluators.short_answer import ShortAnswerGrader
from evaluators.summary import SummaryWriter

__all__ = [
    "preload",
    "BubblewrapSandbox",
    "CodeRunner",
    "Completer",
    "Completion",
    "CompletionRequest",
    "EvaluationError",
    "EvaluationStatus",
    "Grade",
    "Grader",
    "GraderConfig",
    "LitellmCompleter",
    "ModelUnavailable",
    "QuestionResult",
    "Recommendation",
    "SandboxLimits",
    "SandboxUnavailable",
    "Summary",
    "TaskGrader",
    "UnparsableOutput",
    "build_grader",
]


def build_grader(
    config: GraderConfig,
    *,
    completer: Completer | None = None,
    runner: CodeRunner | None = None,
    delimiters: Delimiters = random_delimiter,
) -> Grader:
    """The grader for ``config``; nothing is imported or contacted until it grades.

    Args:
        config: models per task (``None``: offline), transport and sandbox limits.
        completer: reaches the models; by default a
            :class:`evaluators.litellm_adapter.LitellmCompleter` over ``config``
            (tests pass a fake).
        runner: runs code against hidden tests; by default a
            :class:`BubblewrapSandbox` with ``config``'s limits.
        delimiters: draws the fence token around candidate text in each prompt.
    """
    runner = runner or BubblewrapSandbox(
        SandboxLimits.from_config(config),
        python=config.sandbox_python,
        concurrency=config.sandbox_concurrency,
    )
    if completer is None and config.models:
        completer = LitellmCompleter(config)
    short_answer: ShortAnswerGrader | None = None
    code: CodeGrader | None = None
    summary: SummaryWriter | None = None
    if completer is not None and config.model_short_answer:
        short_answer = ShortAnswerGrader(
            completer, config.model_short_answer, delimiters=delimiters
        )
    if completer is not None and config.model_code:
        code = CodeGrader(completer, config.model_code, runner, delimiters=delimiters)
    if completer is not None and config.model_summary:
        summary = SummaryWriter(completer, config.model_summary, delimiters=delimiters)
    return TaskGrader(runner, short_answer=short_answer, code=code, summary=summary)


def preload(config: GraderConfig) -> None:
    """Import the model library now if ``config`` names a model (seconds of
    blocking): a worker does it before taking jobs, so that no job waits behind it."""
    if config.models:
        import_litellm()
