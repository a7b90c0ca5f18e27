"""Fakes for the graders' ports, and question builders (STYLE.md section 11)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

from evaluators.completer import Completion, CompletionRequest
from evaluators.sandbox import CaseResult, Outcome, SandboxReport
from protocol.definition import (
    CodeQuestion,
    CodeTests,
    McqQuestion,
    ShortAnswerQuestion,
)

Reply = str | dict[str, Any] | Exception


class FakeCompleter:
    """Answers each request with the next scripted reply and records the requests.

    A dict reply is sent as JSON; an exception is raised.
    """

    def __init__(self, *replies: Reply, model: str | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[CompletionRequest] = []
        self.model = model

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return Completion(text=text, model=self.model or request.model)

    @property
    def prompt(self) -> str:
        """The user message of the last request."""
        return self.requests[-1].user


class FakeRunner:
    """Reports that ``passed`` of the cases passed, and records the code it got."""

    def __init__(self, passed: int | None = None) -> None:
        self.passed = passed
        self.codes: list[str] = []

    async def run(self, code: str, tests: CodeTests) -> SandboxReport:
        self.codes.append(code)
        passed = len(tests.cases) if self.passed is None else self.passed
        cases = tuple(
            CaseResult(i, passed=i < passed, actual="1")
            for i in range(len(tests.cases))
        )
        return SandboxReport(Outcome.COMPLETED, "all test cases ran", cases, 0, "")


def counting_delimiters(prefix: str = "d") -> Callable[[], str]:
    """A delimiter generator giving ``d0``, ``d1``, ..."""
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter)}"


def mcq(points: float = 5) -> McqQuestion:
    return McqQuestion.model_validate(
        {
            "type": "mcq",
            "text": "Which is a prime?",
            "options": [{"id": "a", "text": "4"}, {"id": "b", "text": "7"}],
            "correct_answer": "b",
            "points": points,
            "time_limit_s": 30,
        }
    )


def short_answer(
    keywords: Sequence[str] = ("atomicity", "isolation"),
    *,
    points: float = 10,
    sample_solution: str | None = None,
) -> ShortAnswerQuestion:
    return ShortAnswerQuestion.model_validate(
        {
            "type": "short_answer",
            "text": "What does ACID stand for?",
            "expected_keywords": list(keywords),
            "sample_solution": sample_solution,
            "points": points,
            "time_limit_s": 60,
        }
    )


def code(
    *,
    points: float = 20,
    criteria: Sequence[str] = ("correctness", "readability"),
    tests: bool = True,
    language: str = "python",
) -> CodeQuestion:
    data: dict[str, Any] = {
        "type": "code",
        "text": "Write add(a, b)",
        "language": language,
        "sample_solution": "def add(a, b): return a + b",
        "evaluation_criteria": list(criteria),
        "points": points,
        "time_limit_s": 120,
    }
    if tests:
        data["tests"] = {
            "entrypoint": "add",
            "cases": [
                {"args": [1, 2], "expected": 3},
                {"args": [2, 2], "expected": 4},
                {"args": [0, 0], "expected": 0},
                {"args": [5, 5], "expected": 10},
            ],
        }
    return CodeQuestion.model_validate(data)


def short_judgement(
    score: float,
    *,
    relevance: float = 1.0,
    explained: Sequence[str] = ("atomicity", "isolation"),
    **extra: Any,
) -> dict[str, Any]:
    """A model's judgement of a short answer; by default a genuine answer that
    explains both keywords of :func:`short_answer`."""
    return {
        "relevance": relevance,
        "keywords_explained": list(explained),
        "semantic_score": score,
        "feedback": "fine",
        "strengths": ["clear"],
        "improvements": ["more depth"],
        **extra,
    }


def code_judgement(**scores: float) -> dict[str, Any]:
    return {
        "criteria": [
            {"criterion": name, "score": score, "comment": "ok"}
            for name, score in scores.items()
        ],
        "strengths": ["works"],
        "improvements": ["name things"],
        "overall_feedback": "good",
    }
