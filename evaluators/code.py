"""Code: the model's criteria scores, and the hidden tests' pass rate where there are.

The model scores each of the question's criteria (or :data:`DEFAULT_CRITERIA`) from
0 to 10, by name; the model's share is the mean of those scores over 10. When the
question has tests in a language the sandbox runs (Python), the code also runs against
them and the final score weighs both equally::

    score = points * (TESTS_WEIGHT * pass_rate + (1 - TESTS_WEIGHT) * model_share)

Without runnable tests the model's share alone gives the score. A judgement that omits
one of the criteria is :class:`evaluators.errors.UnparsableOutput`: every criterion
must be judged for the score to mean anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from evaluators._judgement import ask, clamp
from evaluators.completer import Completer, Completion
from evaluators.errors import UnparsableOutput
from evaluators.grade import Grade
from evaluators.prompts import Delimiters, code_prompt, random_delimiter
from evaluators.sandbox import CodeRunner, SandboxReport
from protocol.definition import CodeQuestion

DEFAULT_CRITERIA = ("correctness", "efficiency", "readability")
CRITERION_MAX = 10.0
TESTS_WEIGHT = 0.5
SANDBOX_LANGUAGES = frozenset({"python", "python3"})


class CriterionScore(BaseModel):
    """The model's score of one criterion, ``0..10``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    criterion: str
    score: float
    comment: str


class CodeJudgement(BaseModel):
    """What the model must answer (sent as a strict JSON schema)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    criteria: list[CriterionScore]
    strengths: list[str]
    improvements: list[str]
    overall_feedback: str


def criteria_of(question: CodeQuestion) -> tuple[str, ...]:
    """The criteria the model scores: the question's, or the defaults."""
    return tuple(question.evaluation_criteria) or DEFAULT_CRITERIA


def runs_in_sandbox(question: CodeQuestion) -> bool:
    """Whether the question has tests the sandbox can run."""
    return question.tests is not None and question.language.lower() in SANDBOX_LANGUAGES


async def run_tests(
    runner: CodeRunner, question: CodeQuestion, answer: str
) -> SandboxReport | None:
    """Run ``answer`` against the question's tests, or ``None`` when it has none.

    Raises:
        SandboxUnavailable: the sandbox could not run.
    """
    if question.tests is None or not runs_in_sandbox(question):
        return None
    return await runner.run(answer, question.tests)


def tests_feedback(question: CodeQuestion, report: SandboxReport | None) -> object:
    """The ``tests`` entry of a code grade's feedback."""
    if report is not None:
        return report.feedback()
    if question.tests is None:
        return {"ran": False, "reason": "the question has no tests"}
    return {"ran": False, "reason": f"no sandbox for {question.language}"}


class CodeGrader:
    """Grades code with a model and the sandbox (see the module docstring).

    Args:
        completer: reaches the model.
        model: the litellm model string for code.
        runner: runs the hidden tests.
        delimiters: draws the fence token of each call.
    """

    def __init__(
        self,
        completer: Completer,
        model: str,
        runner: CodeRunner,
        *,
        delimiters: Delimiters = random_delimiter,
    ) -> None:
        self._completer = completer
        self._model = model
        self._runner = runner
        self._delimiters = delimiters

    async def grade(self, question: CodeQuestion, answer: str) -> Grade:
        """Grade ``answer``; the score is clamped to the question's points.

        Raises:
            ModelUnavailable: the model did not answer.
            UnparsableOutput: it answered outside the schema or skipped a criterion.
            SandboxUnavailable: the sandbox could not run.
        """
        report = await run_tests(self._runner, question, answer)
        criteria = criteria_of(question)
        tests_line = None
        if report is not None:
            tests_line = f"{report.passed} of {len(report.cases)} passed"
        prompt = code_prompt(
            question=question.text,
            answer=answer,
            language=question.language,
            criteria=criteria,
            sample_solution=question.sample_solution,
            tests_line=tests_line,
            delimiters=self._delimiters,
        )
        judgement, completion = await ask(
            self._completer, self._model, prompt, CodeJudgement
        )
        scores = criterion_scores(criteria, judgement, completion)
        model_share = sum(scores.values()) / (len(scores) * CRITERION_MAX)
        tests_weight = TESTS_WEIGHT if report is not None else 0.0
        pass_rate = report.pass_rate if report is not None else 0.0
        fraction = tests_weight * pass_rate + (1 - tests_weight) * model_share
        feedback: dict[str, object] = {
            "criteria_scores": scores,
            "criteria_comments": {c.criterion: c.comment for c in judgement.criteria},
            "criterion_max": CRITERION_MAX,
            "strengths": judgement.strengths,
            "improvements": judgement.improvements,
            "overall_feedback": judgement.overall_feedback,
            "weights": {"tests": tests_weight, "model": 1 - tests_weight},
            "tests": tests_feedback(question, report),
        }
        return Grade(
            score=clamp(question.points * fraction, question.points),
            max_score=question.points,
            feedback=feedback,
            model=completion.model,
            prompt_version=prompt.version,
            raw=completion.text,
        )


def criterion_scores(
    criteria: Sequence[str], judgement: CodeJudgement, completion: Completion
) -> Mapping[str, float]:
    """Each criterion's score, clamped to ``0..10``, matched by name ignoring case.

    Raises:
        UnparsableOutput: a criterion has no score.
    """
    given: dict[str, float] = {}
    for item in judgement.criteria:
        given.setdefault(item.criterion.strip().lower(), item.score)
    missing = [name for name in criteria if name.strip().lower() not in given]
    if missing:
        raise UnparsableOutput(
            f"expected a score for every criterion, missing {missing}",
            model=completion.model,
            raw=completion.text,
        )
    return {
        name: clamp(given[name.strip().lower()], CRITERION_MAX) for name in criteria
    }
