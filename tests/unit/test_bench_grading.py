"""The grading bench's pure helpers: questions, the stub's replies, /proc, arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bench.grading import (
    STUB_KEY,
    STUB_MODEL,
    answer_text,
    attempts_for,
    definition,
    parse_assignment,
    parse_proc_stat_busy,
    parse_stat_children_cpu,
    rate,
    worker_argv,
    worker_environment,
)
from bench.grading_stub import DEFAULT_CRITERIA, criteria_in, stub_reply
from evaluators import code
from evaluators.code import CodeJudgement, criteria_of
from evaluators.prompts import code_prompt
from evaluators.short_answer import ShortAnswerJudgement
from evaluators.summary import SummaryJudgement
from protocol.definition import CodeQuestion, parse_definition


@pytest.mark.parametrize("kind", ["mcq", "short_answer", "code"])
def test_every_kind_makes_a_valid_interview(kind: str) -> None:
    parsed = parse_definition(definition(kind, 3, "bench"))

    assert [q.type for q in parsed.questions] == [kind] * 3
    assert answer_text(kind)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        definition("essay", 1, "bench")


def test_attempts_round_up_to_hold_every_answer() -> None:
    assert attempts_for(2000, 10) == 200
    assert attempts_for(2001, 10) == 201
    assert attempts_for(0, 10) == 0
    with pytest.raises(ValueError):
        attempts_for(10, 0)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def test_the_stub_answers_a_short_answer_judgement() -> None:
    reply = stub_reply(_schema(ShortAnswerJudgement))

    ShortAnswerJudgement.model_validate_json(json.dumps(reply))


def test_the_stub_scores_every_criterion_of_a_code_prompt() -> None:
    question = parse_definition(definition("code", 1, "bench")).questions[0]
    assert isinstance(question, CodeQuestion)
    prompt = code_prompt(
        question=question.text,
        answer="def add(a, b): return a + b",
        language=question.language,
        criteria=criteria_of(question),
        sample_solution=None,
        tests_line="2 of 2 passed",
    )

    reply = stub_reply(_schema(CodeJudgement), prompt.system + "\n" + prompt.user)

    judgement = CodeJudgement.model_validate_json(json.dumps(reply))
    assert [c.criterion for c in judgement.criteria] == ["correctness", "readability"]


def test_a_prompt_without_criteria_gets_the_defaults() -> None:
    assert criteria_in("no list here") == DEFAULT_CRITERIA == code.DEFAULT_CRITERIA


def test_the_stub_answers_a_summary_judgement() -> None:
    reply = stub_reply(_schema(SummaryJudgement))

    SummaryJudgement.model_validate_json(json.dumps(reply))


def test_an_unknown_schema_gets_a_value_per_property() -> None:
    schema = {
        "required": ["a", "b", "c", "d"],
        "properties": {
            "a": {"type": "number"},
            "b": {"type": "array"},
            "c": {"enum": ["x", "y"]},
            "d": {"type": "string"},
        },
    }

    assert stub_reply(schema) == {"a": 1, "b": [], "c": "x", "d": "ok"}


def test_the_worker_environment_points_every_model_at_the_stub() -> None:
    base = {"PATH": "/bin", "MODEL_SUMMARY": "openai/gpt", "REDIS_PREFIX": "x:"}

    env = worker_environment(
        base,
        database_url="postgresql://db/bench",
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix="bench:",
        jwt_secret="s" * 32,
        api_base="http://127.0.0.1:9/v1",
        extra=[("DB_POOL_MAX", "20")],
    )

    assert env["PATH"] == "/bin"
    assert "MODEL_SUMMARY" not in env  # summaries stay offline
    assert env["MODEL_SHORT_ANSWER"] == env["MODEL_CODE"] == STUB_MODEL
    assert env["OPENAI_API_KEY"] == STUB_KEY
    assert env["REDIS_PREFIX"] == "bench:"
    assert env["DB_POOL_MAX"] == "20"


def test_assignments_are_key_equals_value() -> None:
    assert parse_assignment("DB_POOL_MAX=20") == ("DB_POOL_MAX", "20")
    assert parse_assignment("A=b=c") == ("A", "b=c")
    for bad in ("novalue", "=x", "A B=1"):
        with pytest.raises(ValueError):
            parse_assignment(bad)


def test_rate_is_per_second_over_the_span() -> None:
    assert rate(500, 1000, 3000) == 250
    assert rate(5, 1000, 1000) is None


def test_children_cpu_is_fields_16_and_17() -> None:
    fields = " ".join(str(n) for n in range(3, 30))
    stat = f"42 (python -m server) {fields}"
    # Field n of the line holds n here: cutime=16, cstime=17.
    assert parse_stat_children_cpu(stat) == 16 + 17


def test_machine_busy_leaves_out_idle_and_iowait() -> None:
    text = "cpu  100 5 50 800 40 1 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"

    busy, total = parse_proc_stat_busy(text)

    assert total == 998
    assert busy == 998 - 800 - 40


def test_profiled_workers_write_one_file_each(tmp_path: Path) -> None:
    assert worker_argv(None, 0)[-2:] == ["server", "worker"]
    argv = worker_argv(tmp_path, 1)
    assert argv[-1] == str(tmp_path / "worker1.prof")
    assert "cProfile" in argv[-2]
