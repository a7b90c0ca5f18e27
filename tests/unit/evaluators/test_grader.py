"""Dispatch and wiring (evaluators/grader.py, evaluators/__init__.py)."""

from __future__ import annotations

from evaluators import GraderConfig, LitellmCompleter, build_grader
from evaluators.grade import EvaluationStatus, QuestionResult
from evaluators.grader import TaskGrader
from tests.unit.evaluators._fakes import (
    FakeCompleter,
    FakeRunner,
    code,
    code_judgement,
    mcq,
    short_answer,
    short_judgement,
)

MODELS = GraderConfig(
    model_short_answer="openai/short",
    model_code="openai/code",
    model_summary="openai/summary",
)

EVALUATED = EvaluationStatus.EVALUATED


async def test_each_task_asks_its_own_model() -> None:
    completer = FakeCompleter(
        short_judgement(5),
        code_judgement(correctness=10, readability=10),
        {"summary": "Good.", "recommendation": "hire"},
    )
    grader = build_grader(MODELS, completer=completer, runner=FakeRunner())

    await grader.grade(short_answer(), "atomicity")
    await grader.grade(code(), "def add(a, b): return a + b")
    await grader.summarise(
        title="t", results=[QuestionResult(0, "mcq", "easy", 1, 1, EVALUATED, False)]
    )

    models = [request.model for request in completer.requests]
    assert models == ["openai/short", "openai/code", "openai/summary"]


async def test_mcq_never_asks_a_model() -> None:
    completer = FakeCompleter()
    grader = build_grader(MODELS, completer=completer, runner=FakeRunner())

    grade = await grader.grade(mcq(), "b")

    assert grade.model == "rule:mcq"
    assert completer.requests == []


async def test_a_task_without_a_model_falls_back_to_offline() -> None:
    completer = FakeCompleter(short_judgement(5))
    config = GraderConfig(model_short_answer="openai/short")
    grader = build_grader(config, completer=completer, runner=FakeRunner())

    short = await grader.grade(short_answer(), "atomicity")
    written = await grader.grade(code(), "x")

    assert short.model == "openai/short"
    assert written.model == "offline"


def test_the_default_completer_is_litellm_and_builds_nothing_yet() -> None:
    grader = build_grader(MODELS)

    assert isinstance(grader, TaskGrader)
    code_grader = grader._code  # private, but this is the wiring under test
    assert code_grader is not None
    completer = code_grader._completer
    assert isinstance(completer, LitellmCompleter)
    assert completer._litellm is None


def test_the_config_lists_each_model_once_and_hides_the_key() -> None:
    config = GraderConfig(
        model_short_answer="a",
        model_code="a",
        model_summary="b",
        fallbacks=("c", "b"),
        api_key="sk-secret",
    )

    assert config.models == ("a", "b", "c")
    assert "sk-secret" not in repr(config)
