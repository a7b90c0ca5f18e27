"""Sandbox throughput, measured by ``python -m bench.sandbox``.

Usage: ``python -m bench.sandbox [--runs N] [--concurrency C]``.

Runs a correct two-case solution N times through :class:`BubblewrapSandbox`, C runs at
a time (default: one per core), and prints runs per second overall and per core. The
target is at least 10 runs per second per core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence

from evaluators.sandbox import BubblewrapSandbox, Outcome
from protocol.definition import CodeTests

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = CodeTests.model_validate(
    {
        "entrypoint": "add",
        "cases": [{"args": [1, 2], "expected": 3}, {"args": [2, 5], "expected": 7}],
    }
)


async def measure(runs: int, concurrency: int) -> float:
    """Runs per second over ``runs`` runs, ``concurrency`` at a time.

    Raises:
        RuntimeError: a run did not pass (the figure would be meaningless).
        SandboxUnavailable: the sandbox could not run.
    """
    sandbox = BubblewrapSandbox()
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            report = await sandbox.run(SOLUTION, TESTS)
        if report.outcome is not Outcome.COMPLETED or report.pass_rate != 1:
            raise RuntimeError(f"a benchmark run failed: {report.message}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return runs / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, measure, print the figures."""
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=cores)
    arguments = parser.parse_args(argv)
    rate = asyncio.run(measure(arguments.runs, arguments.concurrency))
    print(
        f"sandbox: {arguments.runs} runs, concurrency {arguments.concurrency}, "
        f"{cores} cores: {rate:.1f} runs/s, {rate / cores:.1f} runs/s per core"
    )


if __name__ == "__main__":  # pragma: no cover - the command-line entry point
    main()
