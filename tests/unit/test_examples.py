from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.definition import CodeQuestion, InterviewDefinition, parse_definition

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))


def _load(path: Path) -> InterviewDefinition:
    return parse_definition(json.loads(path.read_text(encoding="utf-8")))


def test_examples_directory_holds_the_demo_interview() -> None:
    assert EXAMPLES / "full-stack-developer.json" in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_example_is_a_valid_definition(path: Path) -> None:
    assert _load(path).questions


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_sample_solution_passes_its_own_tests(path: Path) -> None:
    # The examples are ours, so running their sample solutions here is safe; it
    # keeps the hidden tests and the published solutions from drifting apart.
    for question in _load(path).questions:
        if not isinstance(question, CodeQuestion) or question.tests is None:
            continue
        assert question.sample_solution is not None
        namespace: dict[str, object] = {}
        exec(question.sample_solution, namespace)
        function = namespace[question.tests.entrypoint]
        assert callable(function)
        for case in question.tests.cases:
            assert function(*case.args) == case.expected


def test_demo_interview_covers_every_question_type() -> None:
    definition = _load(EXAMPLES / "full-stack-developer.json")
    types = [question.type for question in definition.questions]

    assert definition.title == "Full Stack Developer Interview"
    assert sorted(types) == sorted(["mcq"] * 2 + ["short_answer"] * 2 + ["code"] * 2)
    assert definition.settings.max_attempts == 2
    assert definition.settings.grace_s == 2
    assert all(60 <= q.time_limit_s <= 600 for q in definition.questions)
