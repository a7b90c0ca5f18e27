"""The code sandbox with real bubblewrap (evaluators/sandbox.py).

Each hostile program is contained, reported in the grade's feedback and scored, and
the test process (standing in for the server and the worker) carries on unharmed.
Without ``bwrap`` these tests fail: run ``make system-deps``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.sandbox import main as bench_main, measure
from evaluators import SandboxUnavailable
from evaluators.sandbox import BubblewrapSandbox, Outcome, SandboxLimits
from tests.integration._sandbox import (
    errors,
    grade,
    leftover_sandboxes,
    make_sandbox,
    question,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox() -> BubblewrapSandbox:
    return make_sandbox()


@pytest.fixture(autouse=True)
def nothing_survives_a_run() -> Iterator[None]:
    yield
    assert leftover_sandboxes() == []


async def test_a_correct_solution_passes(sandbox: BubblewrapSandbox) -> None:
    feedback = await grade(sandbox, "def add(a, b):\n    return a + b\n")

    assert feedback["score"] == 10
    assert feedback["outcome"] == "completed"
    assert (feedback["passed"], feedback["total"]) == (2, 2)


async def test_a_wrong_solution_fails_with_its_values(
    sandbox: BubblewrapSandbox,
) -> None:
    feedback = await grade(sandbox, "def add(a, b):\n    return a * b\n")

    assert feedback["score"] == 5  # 2 * 2 == 2 + 2
    assert [case["actual"] for case in feedback["cases"]] == ["2", "4"]


async def test_exceptions_and_odd_return_values_are_reported(
    sandbox: BubblewrapSandbox,
) -> None:
    code = (
        "def add(a, b):\n    if a == 1:\n        raise ValueError('no')\n    return {1}"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert errors(feedback) == [
        "ValueError: no",
        "return value is not JSON: {1}",
    ]


async def test_code_that_does_not_load_is_reported(sandbox: BubblewrapSandbox) -> None:
    for code, message in [("def add(:", "SyntaxError"), ("x = 1", "KeyError: 'add'")]:
        feedback = await grade(sandbox, code)

        assert feedback["score"] == 0
        assert feedback["outcome"] == "load_error"
        assert message in feedback["message"]


async def test_a_fork_bomb_is_contained(sandbox: BubblewrapSandbox) -> None:
    code = "import os\ndef add(a, b):\n    while True:\n        os.fork()\n"

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert all("BlockingIOError" in error for error in errors(feedback))
    after = await grade(sandbox, "def add(a, b):\n    return a + b\n")
    assert after["score"] == 10  # the worker carries on


async def test_an_endless_loop_stops_at_the_cpu_limit(
    sandbox: BubblewrapSandbox,
) -> None:
    feedback = await grade(sandbox, "def add(a, b):\n    while True:\n        pass\n")

    assert feedback["score"] == 0
    assert feedback["outcome"] == Outcome.CPU_TIME
    assert errors(feedback) == ["stopped after the CPU time limit of 1 s"] * 2


async def test_sleeping_forever_stops_at_the_wall_clock_limit(
    sandbox: BubblewrapSandbox,
) -> None:
    code = "import time\ndef add(a, b):\n    time.sleep(3600)\n"

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert feedback["outcome"] == Outcome.WALL_TIME
    assert "wall-clock limit of 4 s" in feedback["message"]


@pytest.mark.parametrize(
    "code",
    [
        "def add(a, b):\n    while True:\n        print('x' * 1000)\n",
        "def add(a, b):\n    return 'x' * 10_000_000\n",
    ],
    ids=["printed", "returned"],
)
async def test_a_huge_output_is_cut_off(sandbox: BubblewrapSandbox, code: str) -> None:
    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert feedback["outcome"] == Outcome.OUTPUT
    assert len(feedback["output"]) <= 500


async def test_a_huge_allocation_hits_the_memory_limit(
    sandbox: BubblewrapSandbox,
) -> None:
    feedback = await grade(
        sandbox, "def add(a, b):\n    return len(bytearray(1 << 30))"
    )

    assert feedback["score"] == 0
    assert errors(feedback) == ["MemoryError: "] * 2


async def test_the_hosts_files_are_not_visible(sandbox: BubblewrapSandbox) -> None:
    code = (
        "import os\n"
        "def add(a, b):\n"
        "    if a == 1:\n"
        "        return open('/etc/passwd').read()\n"
        "    return sorted(os.listdir('/'))\n"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert errors(feedback)[0].startswith("FileNotFoundError")
    visible = feedback["cases"][1]["actual"]
    assert "work" not in visible and "root" not in visible and "etc" not in visible
    assert "root:x:0:0" not in str(feedback)


async def test_the_servers_environment_is_not_visible(
    sandbox: BubblewrapSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERVIEW_TEST_SECRET", "s3cret-value")
    code = (
        "import os\n"
        "def add(a, b):\n"
        "    if a == 1:\n"
        "        return dict(os.environ)\n"
        "    return open('/proc/1/environ').read()\n"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert "s3cret-value" not in str(feedback)
    assert "INTERVIEW_TEST_SECRET" not in str(feedback)


async def test_sockets_reach_nothing(sandbox: BubblewrapSandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            "import socket\n"
            "def add(a, b):\n"
            f"    host = ('127.0.0.1', {port}) if a == 1 else ('1.1.1.1', 80)\n"
            "    socket.create_connection(host, timeout=1)\n"
            "    return a + b\n"
        )

        feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert errors(feedback)[0].startswith("ConnectionRefusedError")
    assert "Network is unreachable" in errors(feedback)[1]


async def test_writing_outside_tmp_fails_and_tmp_is_private(
    sandbox: BubblewrapSandbox, tmp_path: Path
) -> None:
    name = f"sandbox-{uuid.uuid4().hex}"
    code = (
        "def add(a, b):\n"
        "    if a == 1:\n"
        f"        open('/tmp/{name}', 'w').write('x')\n"
        f"        open('/{name}', 'w')\n"
        "    return open('/usr/x', 'w')\n"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert "Read-only file system" in errors(feedback)[0]
    assert "Read-only file system" in errors(feedback)[1]
    assert not Path("/tmp", name).exists()
    assert not Path("/", name).exists()


async def test_a_file_larger_than_the_limit_cannot_be_written(
    sandbox: BubblewrapSandbox,
) -> None:
    code = (
        "import signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "def add(a, b):\n"
        "    open('/tmp/big', 'wb').write(bytes(2 << 20))\n"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert "File too large" in errors(feedback)[0]


async def test_a_program_that_exits_early_is_reported(
    sandbox: BubblewrapSandbox,
) -> None:
    feedback = await grade(sandbox, "import os\ndef add(a, b):\n    os._exit(3)\n")

    assert feedback["outcome"] == Outcome.CRASHED
    assert feedback["message"] == "the program exited with code 3 before finishing"


def test_a_sandbox_dies_with_the_worker_that_started_it(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import asyncio\n"
        "from evaluators.sandbox import BubblewrapSandbox, SandboxLimits\n"
        "from protocol.definition import CodeTests\n"
        "tests = CodeTests(entrypoint='add', cases=[{'args': [1, 2], 'expected': 3}])\n"
        "code = 'import time\\ndef add(a, b):\\n    time.sleep(3600)\\n'\n"
        "sandbox = BubblewrapSandbox(SandboxLimits(wall_s=600))\n"
        "asyncio.run(sandbox.run(code, tests))\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(worker)], cwd=Path(__file__).parents[2]
    )
    try:
        wait_until(lambda: bool(leftover_sandboxes()))
    finally:
        process.kill()
        process.wait()
    wait_until(lambda: not leftover_sandboxes())


async def test_a_broken_sandbox_is_an_error_not_a_score() -> None:
    broken = BubblewrapSandbox(SandboxLimits(memory_bytes=1 << 20))  # no room to start

    tests = question().tests
    assert tests is not None

    with pytest.raises(SandboxUnavailable, match="did not start"):
        await broken.run("def add(a, b): return a + b", tests)


async def test_the_bench_measures_runs_per_second() -> None:
    assert await measure(runs=4, concurrency=2) > 0


async def test_the_bench_refuses_to_time_failing_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bench.sandbox.SOLUTION", "def add(a, b): return 0")

    with pytest.raises(RuntimeError, match="a benchmark run failed"):
        await measure(runs=1, concurrency=1)


def test_the_bench_prints_its_figure(capsys: pytest.CaptureFixture[str]) -> None:
    bench_main(["--runs", "2", "--concurrency", "1"])

    assert "runs/s per core" in capsys.readouterr().out
