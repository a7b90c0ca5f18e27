"""What the sandbox tests share: a sandbox with short limits, grading through it, and
finding the sandboxes this test process left running."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluators import GraderConfig, build_grader
from evaluators.sandbox import BubblewrapSandbox, SandboxLimits
from protocol.definition import CodeQuestion

LIMITS = SandboxLimits(cpu_s=1, wall_s=4, output_bytes=16_384)
HARNESS_MARK = '"<candidate>"'


def make_sandbox() -> BubblewrapSandbox:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is missing: run `make system-deps`")
    return BubblewrapSandbox(LIMITS)


def question(cases: list[dict[str, Any]] | None = None) -> CodeQuestion:
    return CodeQuestion.model_validate(
        {
            "type": "code",
            "text": "Write add(a, b)",
            "points": 10,
            "time_limit_s": 60,
            "tests": {
                "entrypoint": "add",
                "cases": cases
                or [{"args": [1, 2], "expected": 3}, {"args": [2, 2], "expected": 4}],
            },
        }
    )


async def grade(sandbox: BubblewrapSandbox, code: str) -> dict[str, Any]:
    """The offline grade of ``code``: its score and its tests feedback."""
    grader = build_grader(GraderConfig(), runner=sandbox)
    result = await grader.grade(question(), code)
    tests = result.feedback["tests"]
    assert isinstance(tests, dict)
    return {"score": result.score, **tests}


def _parent(pid: str) -> str | None:
    try:
        status = (Path("/proc") / pid / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return line.split()[1]
    return None


def _descends_from_us(pid: str) -> bool:
    """Only this test process's sandboxes count: other runs may share the machine."""
    us = str(os.getpid())
    seen: set[str] = set()
    while pid not in ("0", "1") and pid not in seen:
        if pid == us:
            return True
        seen.add(pid)
        parent = _parent(pid)
        if parent is None:
            return False
        pid = parent
    return False


def leftover_sandboxes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if HARNESS_MARK in cmdline and _descends_from_us(entry.name):
            found.append(entry.name)
    return found


def errors(feedback: dict[str, Any]) -> list[str]:
    return [case.get("error") or "" for case in feedback["cases"]]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
