"""The interview definition document (PRODUCT.md section 3).

The same JSON serves ``POST /api/interviews``, ``interview-server import`` and the files
in ``examples/``. :func:`parse_definition` validates it and reports every wrong field
by its path, so the API can answer 422 with them.

Every part has a size limit (the constants below, listed in the README): a server
keeps definitions in memory and sends their tests to the sandbox, so what one
recruiter may store is bounded field by field, not only by the request's size.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from protocol.attempt import Option, QuestionView

MAX_QUESTIONS = 200
MAX_TIME_LIMIT_S = 24 * 3600
DEFAULT_GRACE_S = 2.0
MAX_TEXT_CHARS = 20_000
"""A question's text, an option's text, the description, a sample solution."""
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 200
MAX_CRITERIA = 20
MAX_CRITERION_CHARS = 500
MAX_TEST_CASES = 50
MAX_TEST_VALUE_CHARS = 10_000
"""A test's ``args``, and its ``expected``, each as compact JSON."""
MAX_TEST_VALUE_DEPTH = 32
"""Nesting of a test's ``args`` or ``expected`` (a stored definition is read back by
a parser that stops at 200 levels in all)."""

# Numbers are strict: `"time_limit_s": true` must not become a one-second question,
# nor "60" a number (strict floats still accept integers).
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
Solution = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Points = Annotated[float, Field(gt=0, le=10_000, strict=True)]
TimeLimit = Annotated[int, Field(ge=1, le=MAX_TIME_LIMIT_S, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Strict):
    """Per-interview settings."""

    max_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 1
    grace_s: Annotated[float, Field(ge=0, le=60, strict=True)] | None = None
    """Omitted: the server's default (``GRACE_MS``) is written in at creation."""

    @property
    def grace_ms(self) -> int:
        grace_s = DEFAULT_GRACE_S if self.grace_s is None else self.grace_s
        return round(grace_s * 1000)


class OptionDef(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    text: Text


class _Question(_Strict):
    text: Text
    points: Points
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    time_limit_s: TimeLimit


class McqQuestion(_Question):
    type: Literal["mcq"]
    options: Annotated[list[OptionDef], Field(min_length=2, max_length=26)]
    correct_answer: str

    # Field validators, not a model validator, so that the 422 names the wrong field
    # ("questions.0.correct_answer"), not just the question.
    @field_validator("options")
    @classmethod
    def _option_ids_are_unique(cls, options: list[OptionDef]) -> list[OptionDef]:
        ids = [option.id for option in options]
        if len(set(ids)) != len(ids):
            raise ValueError("option ids must be unique")
        return options

    @field_validator("correct_answer")
    @classmethod
    def _correct_answer_is_an_option(cls, answer: str, info: ValidationInfo) -> str:
        options: list[OptionDef] | None = info.data.get("options")  # None: invalid
        if options is None:
            return answer
        ids = [option.id for option in options]
        if answer not in ids:
            raise ValueError(f"correct_answer {answer!r} is not an option id {ids}")
        return answer


class ShortAnswerQuestion(_Question):
    type: Literal["short_answer"]
    expected_keywords: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS)]],
        Field(max_length=MAX_KEYWORDS),
    ] = []
    sample_solution: Solution | None = None


class TestCase(_Strict):
    args: list[Any]
    expected: Any

    @field_validator("args", "expected")
    @classmethod
    def _value_is_small(cls, value: object) -> object:
        if _nesting(value) > MAX_TEST_VALUE_DEPTH:
            raise ValueError(
                f"expected at most {MAX_TEST_VALUE_DEPTH} levels of nested lists "
                "and objects"
            )
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        if size > MAX_TEST_VALUE_CHARS:
            raise ValueError(
                f"expected at most {MAX_TEST_VALUE_CHARS} characters of JSON, "
                f"got {size}"
            )
        return value


def _nesting(value: object) -> int:
    """How many levels of lists and objects ``value`` has, counted without recursion
    (it may nest deeper than Python's recursion limit) and only up to one past
    :data:`MAX_TEST_VALUE_DEPTH`."""
    depth = 0
    level = [value]
    while depth <= MAX_TEST_VALUE_DEPTH:
        containers = [item for item in level if isinstance(item, list | dict)]
        if not containers:
            break
        depth += 1
        level = [
            child
            for container in containers
            for child in (
                container.values() if isinstance(container, dict) else container
            )
        ]
    return depth


class CodeTests(_Strict):
    entrypoint: Annotated[
        str, Field(max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    ]
    cases: Annotated[list[TestCase], Field(min_length=1, max_length=MAX_TEST_CASES)]


class CodeQuestion(_Question):
    type: Literal["code"]
    language: Annotated[str, Field(min_length=1, max_length=40)] = "python"
    sample_solution: Solution | None = None
    evaluation_criteria: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_CRITERION_CHARS)]],
        Field(max_length=MAX_CRITERIA),
    ] = []
    tests: CodeTests | None = None


QuestionDef = Annotated[
    McqQuestion | ShortAnswerQuestion | CodeQuestion, Field(discriminator="type")
]


class InterviewDefinition(_Strict):
    """A whole interview: what recruiters write and the server stores."""

    title: Annotated[str, Field(min_length=1, max_length=300)]
    description: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] = ""
    settings: Settings = Settings()
    questions: Annotated[
        list[QuestionDef], Field(min_length=1, max_length=MAX_QUESTIONS)
    ]

    def with_default_grace(self, grace_ms: int) -> InterviewDefinition:
        """This definition with ``grace_s`` filled in when it was omitted, so that the
        stored interview keeps its grace whatever the server default becomes."""
        if self.settings.grace_s is not None:
            return self
        settings = self.settings.model_copy(update={"grace_s": grace_ms / 1000})
        return self.model_copy(update={"settings": settings})

    def question_views(self) -> tuple[QuestionView, ...]:
        """What candidates may see of each question, in order."""
        return tuple(
            view_of(index, question) for index, question in enumerate(self.questions)
        )


def view_of(index: int, question: QuestionDef) -> QuestionView:
    """What a candidate sees of ``question``: no key, solution, keywords or tests."""
    options = None
    language = None
    if isinstance(question, McqQuestion):
        options = tuple(
            Option(id=option.id, text=option.text) for option in question.options
        )
    if isinstance(question, CodeQuestion):
        language = question.language
    return QuestionView(
        index=index,
        type=question.type,
        text=question.text,
        options=options,
        language=language,
        points=question.points,
        difficulty=question.difficulty,
        time_limit_s=question.time_limit_s,
    )


class DefinitionError(ValueError):
    """A definition that does not validate.

    Attributes:
        problems: ``[{"path": "questions.2.points", "message": "..."}]``, one per field.
    """

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path']}: {p['message']}" for p in problems))
        self.problems = problems


def parse_definition(data: object) -> InterviewDefinition:
    """Validate a decoded JSON definition.

    Raises:
        DefinitionError: with the path and message of every wrong field.
    """
    try:
        return InterviewDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(
            [
                {"path": _path(error["loc"]) or "(root)", "message": error["msg"]}
                for error in exc.errors()
            ]
        ) from exc


def _path(loc: tuple[int | str, ...]) -> str:
    # Drop the discriminator tag pydantic inserts ("questions.0.mcq.points"), and only
    # that one: an unknown field may well be called "code".
    if len(loc) > 2 and loc[0] == "questions" and isinstance(loc[1], int):
        loc = (*loc[:2], *loc[3:])
    return ".".join(str(part) for part in loc)
