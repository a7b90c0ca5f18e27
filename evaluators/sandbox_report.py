"""What a sandbox run sends back and how it becomes a report.

:data:`HARNESS` runs inside the sandbox; it writes one JSON object per line, each line
starting with a random marker, on a copy of its stdout (the code's own prints go to
stderr). :func:`build_report` turns those lines and the way the run ended into a
:class:`SandboxReport`, comparing each returned value with the expected one here,
outside the sandbox.
"""

from __future__ import annotations

import enum
import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.config import GraderConfig
from protocol.definition import CodeTests

TEXT_LIMIT = 500

# Runs inside the sandbox with `python3 -I -S -B -c`. It forks before it reads its
# request, so that the child, where the candidate's code runs, never holds the
# marker nor the results pipe; the parent then makes itself non-dumpable (no
# /proc/<pid>/fd, /proc/<pid>/mem or ptrace for the child), reads {code, entrypoint,
# cases, marker} on stdin, hands {code, entrypoint, cases} to the child and writes
# one marked JSON line per reply of the child, the case index being the reply's
# rank: all the code can say is one value or error per case. The child's own output
# goes to stderr. The parent ends the way the child did (exit code or signal).
HARNESS = r"""
import ctypes, json, os, signal, sys
def describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:500]
    except BaseException:
        return type(exc).__name__
def candidate(replies):
    request = json.loads(sys.stdin.buffer.read())
    pipe = os.fdopen(replies, "w")
    def reply(**item):
        try:
            line = json.dumps(item)
        except Exception:
            line = json.dumps({"error": "return value is not JSON: "
                               + repr(item.get("value"))[:200]})
        pipe.write(line + "\n")
        pipe.flush()
    scope = {"__name__": "candidate"}
    try:
        exec(compile(request["code"], "<candidate>", "exec"), scope)
        function = scope[request["entrypoint"]]
    except BaseException as exc:
        reply(load_error=describe(exc))
        os._exit(0)
    for args in request["cases"]:
        try:
            value = function(*args)
        except BaseException as exc:
            reply(error=describe(exc))
            continue
        reply(value=value)
    pipe.close()
    os._exit(0)
def harness(child, requests, replies):
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: 0
    request = json.loads(sys.stdin.buffer.read())
    marker = request.pop("marker")
    results = os.fdopen(1, "w")
    def emit(**item):
        results.write(marker + json.dumps(item) + "\n")
        results.flush()
    emit(started=True)
    try:
        with os.fdopen(requests, "w") as pipe:
            pipe.write(json.dumps(request))
    except BrokenPipeError:
        pass
    total = len(request["cases"])
    index = 0
    with os.fdopen(replies, "rb") as pipe:
        for line in pipe:
            try:
                item = json.loads(line)
            except ValueError:
                item = {"error": "unreadable reply"}
            if not isinstance(item, dict):
                item = {"error": "unreadable reply"}
            if index == 0 and "load_error" in item:
                emit(load_error=str(item["load_error"])[:500])
                raise SystemExit(0)
            if "value" in item:
                emit(index=index, value=item["value"])
            else:
                emit(index=index, error=str(item.get("error"))[:500])
            index += 1
            if index == total:
                break
    status = os.waitpid(child, 0)[1]
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    if index == total and os.waitstatus_to_exitcode(status) == 0:
        emit(done=True)
    results.close()
    os._exit(os.waitstatus_to_exitcode(status))
requests = os.pipe()
replies = os.pipe()
child = os.fork()
if child == 0:
    os.close(requests[1])
    os.close(replies[0])
    os.dup2(requests[0], 0)
    os.close(requests[0])
    os.dup2(2, 1)
    candidate(replies[1])
os.close(requests[0])
os.close(replies[1])
harness(child, requests[1], replies[0])
"""


class Outcome(enum.StrEnum):
    """How a run ended."""

    COMPLETED = "completed"
    LOAD_ERROR = "load_error"
    WALL_TIME = "wall_time_exceeded"
    CPU_TIME = "cpu_time_exceeded"
    OUTPUT = "output_limit_exceeded"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits of one run; see :class:`evaluators.config.GraderConfig`."""

    cpu_s: int = 2
    wall_s: float = 5
    memory_bytes: int = 256 * 1024 * 1024
    processes: int = 16
    output_bytes: int = 64 * 1024
    file_bytes: int = 1024 * 1024
    tmp_bytes: int = 8 * 1024 * 1024
    open_files: int = 64

    @classmethod
    def from_config(cls, config: GraderConfig) -> SandboxLimits:
        """The sandbox limits of ``config``."""
        return cls(
            cpu_s=config.sandbox_cpu_s,
            wall_s=config.sandbox_wall_s,
            memory_bytes=config.sandbox_memory_bytes,
            processes=config.sandbox_processes,
            output_bytes=config.sandbox_output_bytes,
            file_bytes=config.sandbox_file_bytes,
            tmp_bytes=config.sandbox_tmp_bytes,
        )


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One test case: passed or not, with the value returned or the error raised."""

    index: int
    passed: bool
    actual: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxReport:
    """Everything one run produced, ready for a grade's feedback."""

    outcome: Outcome
    message: str
    cases: tuple[CaseResult, ...]
    exit_code: int | None
    output: str

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(case.passed for case in self.cases)

    @property
    def pass_rate(self) -> float:
        """The share of cases that passed, ``0..1``."""
        return self.passed / len(self.cases) if self.cases else 0.0

    def feedback(self) -> dict[str, object]:
        """The report as JSON-serialisable feedback."""
        return {
            "outcome": self.outcome.value,
            "message": self.message,
            "passed": self.passed,
            "total": len(self.cases),
            "exit_code": self.exit_code,
            "cases": [
                {"index": c.index, "passed": c.passed, "actual": c.actual}
                | ({"error": c.error} if c.error else {})
                for c in self.cases
            ],
            "output": self.output,
        }


def build_report(
    tests: CodeTests,
    items: Sequence[dict[str, Any]],
    *,
    outcome: Outcome | None,
    exit_code: int | None,
    output: bytes | bytearray,
    limits: SandboxLimits,
) -> SandboxReport:
    """The report of one run from the harness's items and how the run ended.

    Args:
        outcome: set when the runner stopped the run (wall time, output cap).
    """
    load_error = next((i["load_error"] for i in items if "load_error" in i), None)
    done = any(item.get("done") for item in items)
    outcome = outcome or _outcome_of(exit_code, done, load_error)
    message = _message_of(outcome, limits, exit_code, load_error)
    by_index: dict[int, dict[str, Any]] = {}
    for item in items:
        if isinstance(item.get("index"), int):
            by_index.setdefault(item["index"], item)  # forks may repeat a case
    cases = tuple(
        _case(index, case.expected, by_index.get(index), message)
        for index, case in enumerate(tests.cases)
    )
    text = output.decode(errors="replace")[:TEXT_LIMIT]
    return SandboxReport(outcome, message, cases, exit_code, text)


def read_items(results: bytes | bytearray, marker: str) -> list[dict[str, Any]]:
    """The JSON objects the harness wrote on lines starting with ``marker``."""
    items = []
    prefix = marker.encode()
    for line in results.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            item = json.loads(line[len(prefix) :])
        except ValueError:
            continue
        if isinstance(item, dict):
            items.append(item)
    return items


def _outcome_of(exit_code: int | None, done: bool, load_error: str | None) -> Outcome:
    if load_error is not None:
        return Outcome.LOAD_ERROR
    if done and exit_code == 0:
        return Outcome.COMPLETED
    if exit_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return Outcome.CPU_TIME
    return Outcome.CRASHED


def _message_of(
    outcome: Outcome, limits: SandboxLimits, exit_code: int | None, load: str | None
) -> str:
    match outcome:
        case Outcome.COMPLETED:
            return "all test cases ran"
        case Outcome.LOAD_ERROR:
            return f"the code could not be loaded: {load}"
        case Outcome.WALL_TIME:
            return f"stopped after the wall-clock limit of {limits.wall_s:g} s"
        case Outcome.CPU_TIME:
            return f"stopped after the CPU time limit of {limits.cpu_s} s"
        case Outcome.OUTPUT:
            return f"stopped: output exceeded {limits.output_bytes} bytes"
    return f"the program exited with code {exit_code} before finishing"


def _case(
    index: int, expected: Any, item: dict[str, Any] | None, message: str
) -> CaseResult:
    if item is None:
        return CaseResult(index, passed=False, error=message)
    if "error" in item:
        return CaseResult(index, passed=False, error=str(item["error"])[:TEXT_LIMIT])
    value = item.get("value")
    actual = json.dumps(value)[:TEXT_LIMIT]
    return CaseResult(index, passed=value == _json(expected), actual=actual)


def _json(value: Any) -> Any:
    # Expected values go through JSON like the returned ones (tuples become lists).
    return json.loads(json.dumps(value))
