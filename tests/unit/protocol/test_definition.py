"""The interview definition document (protocol/definition.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from protocol.attempt import Option, QuestionView
from protocol.definition import (
    MAX_TEST_VALUE_DEPTH,
    CodeQuestion,
    DefinitionError,
    InterviewDefinition,
    McqQuestion,
    ShortAnswerQuestion,
    parse_definition,
)

HIDDEN_KEYS = (
    "correct_answer",
    "sample_solution",
    "expected_keywords",
    "evaluation_criteria",
    "tests",
)

# PRODUCT.md section 3, verbatim.
PRODUCT_EXAMPLE: dict[str, Any] = json.loads("""
{"title": "Full Stack Developer Interview", "description": "…",
 "settings": {"max_attempts": 2, "grace_s": 2},
 "questions": [
  {"type": "mcq", "text": "…", "options": [{"id": "a", "text": "…"}, {"id": "b", "text": "…"}],
   "correct_answer": "b", "points": 5, "difficulty": "easy", "time_limit_s": 60},
  {"type": "short_answer", "text": "…", "expected_keywords": ["index", "b-tree"],
   "sample_solution": "…", "points": 10, "difficulty": "medium", "time_limit_s": 180},
  {"type": "code", "text": "…", "language": "python", "sample_solution": "…",
   "evaluation_criteria": ["correctness", "complexity", "readability"],
   "tests": {"entrypoint": "two_sum", "cases": [{"args": [[2, 7, 11, 15], 9], "expected": [0, 1]}]},
   "points": 20, "difficulty": "hard", "time_limit_s": 600}]}
""")  # noqa: E501


def example() -> dict[str, Any]:
    return copy.deepcopy(PRODUCT_EXAMPLE)


def problems(data: object) -> dict[str, str]:
    """``{path: message}`` of the definition's problems; fails if it validates."""
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    return {problem["path"]: problem["message"] for problem in caught.value.problems}


# -- valid definitions --------------------------------------------------------------


def test_the_product_example_validates() -> None:
    definition = parse_definition(example())

    assert definition.title == "Full Stack Developer Interview"
    assert definition.settings.max_attempts == 2
    assert definition.settings.grace_ms == 2_000
    assert [q.type for q in definition.questions] == ["mcq", "short_answer", "code"]
    mcq, short, code = definition.questions
    assert isinstance(mcq, McqQuestion)
    assert mcq.correct_answer == "b"
    assert isinstance(short, ShortAnswerQuestion)
    assert short.expected_keywords == ["index", "b-tree"]
    assert isinstance(code, CodeQuestion)
    assert code.tests is not None
    assert code.tests.entrypoint == "two_sum"
    assert code.tests.cases[0].expected == [0, 1]


def test_omitted_settings_and_difficulty_take_their_defaults() -> None:
    data = example()
    del data["settings"], data["description"]
    del data["questions"][1]["difficulty"]

    definition = parse_definition(data)

    assert definition.settings.max_attempts == 1
    assert definition.settings.grace_ms == 2_000
    assert definition.description == ""
    assert definition.questions[1].difficulty == "medium"


def test_fractional_grace_is_rounded_to_whole_milliseconds() -> None:
    data = example()
    data["settings"]["grace_s"] = 1.2345

    assert parse_definition(data).settings.grace_ms == 1_234


# -- refused definitions ------------------------------------------------------------


def test_each_wrong_field_is_reported_by_its_path() -> None:
    data = example()
    data["title"] = ""
    data["questions"][1]["points"] = 0
    del data["questions"][0]["correct_answer"]
    data["questions"][2]["time_limit_s"] = 0
    data["questions"][2]["tests"]["entrypoint"] = "two sum"

    found = problems(data)

    assert set(found) == {
        "title",
        "questions.1.points",
        "questions.0.correct_answer",
        "questions.2.time_limit_s",
        "questions.2.tests.entrypoint",
    }
    assert found["questions.0.correct_answer"] == "Field required"
    assert "greater than 0" in found["questions.1.points"]


# -- size limits (issue 10: what one recruiter may make a server hold) ----------------

DEEP = 40  # levels of nesting past MAX_TEST_VALUE_DEPTH, far below Python's limit


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda q: q[1].update(sample_solution="x" * 20_001), "1.sample_solution"),
        (lambda q: q[2].update(sample_solution="x" * 20_001), "2.sample_solution"),
        (lambda q: q[1].update(expected_keywords=["k"] * 51), "1.expected_keywords"),
        (
            lambda q: q[1].update(expected_keywords=["k" * 201]),
            "1.expected_keywords.0",
        ),
        (
            lambda q: q[2].update(evaluation_criteria=["c"] * 21),
            "2.evaluation_criteria",
        ),
        (
            lambda q: q[2].update(evaluation_criteria=["c" * 501]),
            "2.evaluation_criteria.0",
        ),
        (
            lambda q: q[2]["tests"].update(cases=q[2]["tests"]["cases"] * 51),
            "2.tests.cases",
        ),
        (
            lambda q: q[2]["tests"]["cases"][0].update(args=["x" * 10_000]),
            "2.tests.cases.0.args",
        ),
        (
            lambda q: q[2]["tests"]["cases"][0].update(expected="x" * 10_000),
            "2.tests.cases.0.expected",
        ),
        (
            lambda q: q[2]["tests"]["cases"][0].update(args=[_nested(DEEP)]),
            "2.tests.cases.0.args",
        ),
        (
            lambda q: q[2]["tests"]["cases"][0].update(expected=_nested(DEEP)),
            "2.tests.cases.0.expected",
        ),
        (lambda q: q[2]["tests"].update(entrypoint="f" * 101), "2.tests.entrypoint"),
    ],
)
def test_oversized_parts_are_refused_at_their_path(
    change: Callable[[list[dict[str, Any]]], None], path: str
) -> None:
    data = example()
    change(data["questions"])

    assert list(problems(data)) == [f"questions.{path}"]


def test_test_values_nested_up_to_the_limit_are_kept() -> None:
    data = example()
    case = data["questions"][2]["tests"]["cases"][0]
    case["args"] = [_nested(MAX_TEST_VALUE_DEPTH - 1)]  # args is a level itself
    case["expected"] = {"tree": _nested(MAX_TEST_VALUE_DEPTH - 1)}

    code = parse_definition(data).questions[2]

    assert isinstance(code, CodeQuestion) and code.tests is not None
    assert code.tests.cases[0].expected == case["expected"]


def test_a_test_nested_deeper_than_python_recursion_is_refused_not_raised() -> None:
    data = example()
    case = data["questions"][2]["tests"]["cases"][0]
    case["expected"] = json.loads("[" * 900 + "]" * 900)

    found = problems(data)

    assert "levels of nested" in found["questions.2.tests.cases.0.expected"]


def test_a_definition_at_every_limit_is_stored_and_read_back_alike() -> None:
    data = example()
    code = data["questions"][2]
    code["sample_solution"] = "s" * 20_000
    code["evaluation_criteria"] = ["c" * 500] * 20
    case = {"args": [_nested(MAX_TEST_VALUE_DEPTH - 1)], "expected": "e" * 9_998}
    code["tests"]["cases"] = [case] * 50

    definition = parse_definition(data)

    assert InterviewDefinition.model_validate_json(definition.model_dump_json()) == (
        definition
    )


def test_an_mcq_answer_that_is_not_an_option_is_refused_at_correct_answer() -> None:
    data = example()
    data["questions"][0]["correct_answer"] = "z"

    assert problems(data) == {
        "questions.0.correct_answer": (
            "Value error, correct_answer 'z' is not an option id ['a', 'b']"
        )
    }


def test_duplicate_option_ids_are_refused_at_options() -> None:
    data = example()
    data["questions"][0]["options"][1]["id"] = "a"
    data["questions"][0]["correct_answer"] = "a"

    assert problems(data) == {
        "questions.0.options": "Value error, option ids must be unique"
    }


def test_an_mcq_with_invalid_options_reports_only_the_options() -> None:
    data = example()
    data["questions"][0]["options"] = [{"id": "a", "text": "only one"}]

    assert set(problems(data)) == {"questions.0.options"}


def test_a_definition_without_questions_is_refused() -> None:
    data = example()
    data["questions"] = []

    assert set(problems(data)) == {"questions"}


def test_a_definition_missing_its_questions_is_refused() -> None:
    data = example()
    del data["questions"]

    assert problems(data) == {"questions": "Field required"}


def test_an_unknown_question_type_is_refused() -> None:
    data = example()
    data["questions"][1]["type"] = "essay"

    assert "'essay'" in problems(data)["questions.1"]


def test_a_question_without_type_is_refused() -> None:
    data = example()
    del data["questions"][2]["type"]

    assert set(problems(data)) == {"questions.2"}


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "colour"),
        (("settings",), "settings.colour"),
        (("questions", 0), "questions.0.colour"),
        (("questions", 2, "tests"), "questions.2.tests.colour"),
    ],
)
def test_unknown_fields_are_refused(where: tuple[str | int, ...], path: str) -> None:
    data = example()
    target: Any = data
    for key in where:
        target = target[key]
    target["colour"] = "blue"

    assert problems(data) == {path: "Extra inputs are not permitted"}


@pytest.mark.parametrize("field", ["code", "mcq", "short_answer"])
def test_an_unknown_field_named_like_a_question_type_keeps_its_path(
    field: str,
) -> None:
    data = example()
    data["questions"][0][field] = 1
    data["questions"][2]["tests"]["cases"][0][field] = 1

    assert set(problems(data)) == {
        f"questions.0.{field}",
        f"questions.2.tests.cases.0.{field}",
    }


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("questions", 0, "time_limit_s"), True),
        (("questions", 0, "time_limit_s"), "60"),
        (("questions", 0, "time_limit_s"), 60.5),
        (("questions", 1, "points"), True),
        (("questions", 1, "points"), "10"),
        (("settings", "max_attempts"), True),
        (("settings", "grace_s"), "2"),
    ],
)
def test_a_number_of_the_wrong_type_is_refused(
    where: tuple[str | int, ...], value: object
) -> None:
    data = example()
    target: Any = data
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value

    assert set(problems(data)) == {".".join(str(key) for key in where)}


def test_a_document_that_is_not_an_object_is_refused_at_the_root() -> None:
    assert set(problems([1, 2])) == {"(root)"}


def test_the_error_message_lists_every_problem() -> None:
    data = example()
    data["title"] = ""
    data["questions"][1]["points"] = -1

    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)

    assert str(caught.value).startswith("title: ")
    assert "; questions.1.points: " in str(caught.value)


# -- what candidates may see --------------------------------------------------------


def test_question_views_carry_what_candidates_see_from_the_right_question() -> None:
    views = parse_definition(example()).question_views()

    assert views == (
        QuestionView(
            index=0,
            type="mcq",
            text="…",
            options=(Option(id="a", text="…"), Option(id="b", text="…")),
            language=None,
            points=5.0,
            difficulty="easy",
            time_limit_s=60,
        ),
        QuestionView(
            index=1,
            type="short_answer",
            text="…",
            options=None,
            language=None,
            points=10.0,
            difficulty="medium",
            time_limit_s=180,
        ),
        QuestionView(
            index=2,
            type="code",
            text="…",
            options=None,
            language="python",
            points=20.0,
            difficulty="hard",
            time_limit_s=600,
        ),
    )


def test_question_views_never_carry_keys() -> None:
    data = example()
    for number, question in enumerate(data["questions"]):
        question["text"] = f"question {number}"
    definition = parse_definition(data)

    for view in definition.question_views():
        fields = {f.name for f in dataclasses.fields(view)}
        assert fields.isdisjoint(HIDDEN_KEYS)
        assert all(not hasattr(view, key) for key in HIDDEN_KEYS)
        assert view.text == f"question {view.index}"
        # Nothing of the keys leaks into the values either.
        assert "two_sum" not in repr(view)
        assert "b-tree" not in repr(view)


def test_an_omitted_grace_takes_the_server_default_at_creation() -> None:
    data = example()
    del data["settings"]["grace_s"]
    definition = parse_definition(data)
    assert definition.settings.grace_s is None
    filled = definition.with_default_grace(3_500)
    assert filled.settings.grace_s == 3.5 and filled.settings.grace_ms == 3_500
    assert filled.questions == definition.questions


def test_a_written_grace_is_kept_whatever_the_server_default() -> None:
    definition = parse_definition(example())
    assert definition.with_default_grace(9_000) is definition
    assert definition.settings.grace_ms == 2_000
