"""Runs candidates' code against a question's hidden tests inside bubblewrap.

One run is one ``bwrap`` process holding a system Python (``/usr/bin/python3``) and a
small harness. Nothing of the server is visible inside:

- namespaces: ``--unshare-all`` (user, pid, network, ipc, uts, cgroup), so no network
  beyond an empty loopback, and processes die with the run (``--die-with-parent``,
  and the pid namespace ends with its first process);
- files: ``/usr`` read-only (plus the ``/lib``, ``/lib64``, ``/bin`` links), a fresh
  ``/proc`` and ``/dev``, a private size-limited ``/tmp``; no ``/etc``, no ``/home``,
  no ``/root``, no repository; the root is remounted read-only;
- environment: ``bwrap`` starts with an empty environment (otherwise its own process,
  pid 1 inside, would show the server's variables in ``/proc/1/environ``) and
  ``--clearenv`` for the code;
- identity: a server running as root drops to ``nobody`` before starting ``bwrap``,
  so that the process limit applies (the kernel never limits root's processes) and
  no capability is kept;
- limits (``prlimit`` inside the sandbox, so that they bind the code and not
  ``bwrap``): CPU seconds, address space, processes, file size, open files, no core
  files; outside, a wall-clock timeout and an output cap, both ending the run with
  SIGKILL to its process group;
- lifetime: ``bwrap`` gets SIGKILL if the server dies (``setpriv --pdeathsig``), and
  ``timeout`` inside ends the code one second after the wall-clock limit even if
  nobody is left to stop it.

Only the arguments of each case go in; the harness sends back each return value, and
the comparison with the expected value happens outside, out of the code's reach
(:mod:`evaluators.sandbox_report`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import signal
from dataclasses import dataclass
from typing import Any, Protocol

from evaluators.errors import SandboxUnavailable
from evaluators.sandbox_report import (
    HARNESS,
    TEXT_LIMIT,
    CaseResult,
    Outcome,
    SandboxLimits,
    SandboxReport,
    build_report,
    read_items,
)
from protocol.definition import CodeTests

NOBODY = 65534
CHUNK = 65536
REAP_S = 5.0


class CodeRunner(Protocol):
    """Runs code against tests; :class:`BubblewrapSandbox` is the real one."""

    async def run(self, code: str, tests: CodeTests) -> SandboxReport:
        """Run ``code`` against every case of ``tests``.

        Raises:
            SandboxUnavailable: the sandbox itself could not run.
        """
        ...


class _OutputExceeded(Exception):
    pass


@dataclass
class _Run:
    results: bytearray
    output: bytearray
    exit_code: int | None = None


class BubblewrapSandbox:
    """The bubblewrap runner described in the module docstring.

    Args:
        limits: the limits of each run.
        python: the interpreter inside the sandbox; it must live under ``/usr``.
        bwrap: the ``bwrap`` executable, looked up on ``PATH`` when not absolute.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        python: str = "/usr/bin/python3",
        bwrap: str = "bwrap",
    ) -> None:
        self.limits = limits or SandboxLimits()
        self._python = python
        self._bwrap = bwrap

    async def run(self, code: str, tests: CodeTests) -> SandboxReport:
        """Run ``code`` against ``tests``; see :class:`CodeRunner`.

        Raises:
            SandboxUnavailable: ``bwrap`` or the interpreter is missing, or ``bwrap``
                failed before the harness started.
        """
        marker = secrets.token_hex(8)
        request = {
            "code": code,
            "entrypoint": tests.entrypoint,
            "cases": [case.args for case in tests.cases],
            "marker": marker,
        }
        run, outcome = await self._execute(json.dumps(request).encode())
        items = read_items(run.results, marker)
        if not any(item.get("started") for item in items):
            raise SandboxUnavailable(
                "the sandbox did not start the harness: "
                + run.output.decode(errors="replace")[:TEXT_LIMIT]
            )
        return build_report(
            tests,
            items,
            outcome=outcome,
            exit_code=run.exit_code,
            output=run.output,
            limits=self.limits,
        )

    def command(self) -> list[str]:
        """The full ``bwrap`` command line of one run.

        Raises:
            SandboxUnavailable: ``bwrap`` or the interpreter is missing.
        """
        bwrap = shutil.which(self._bwrap)
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: run `make system-deps`"
            )
        if not self._python.startswith("/usr/") or not os.path.exists(self._python):
            raise SandboxUnavailable(f"no interpreter under /usr at {self._python}")
        # The sandbox dies with the server (pdeathsig), and ends at the wall-clock
        # limit even if nobody is left to kill it (timeout inside).
        setpriv = shutil.which("setpriv")
        parent = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        inside = self._limited_python()
        return [*parent, bwrap, *self._namespace_arguments(), "--", *inside]

    def _namespace_arguments(self) -> list[str]:
        arguments = [
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin",
            "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            "--uid", str(NOBODY),
            "--gid", str(NOBODY),
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for name in ("/bin", "/lib", "/lib64"):
            if os.path.islink(name):
                arguments += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                arguments += ["--ro-bind", name, name]
        return arguments + [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(self.limits.tmp_bytes),
            "--tmpfs", "/tmp",
            "--chdir", "/tmp",
            "--remount-ro", "/",
        ]  # fmt: skip

    def _limited_python(self) -> list[str]:
        limits = self.limits
        backstop = str(math.ceil(limits.wall_s) + 1)
        return [
            "/usr/bin/timeout", "--signal=KILL", backstop,
            "/usr/bin/prlimit",
            f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
            f"--as={limits.memory_bytes}",
            f"--nproc={limits.processes}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
            "--core=0",
            self._python, "-I", "-S", "-B", "-c", HARNESS,
        ]  # fmt: skip

    async def _execute(self, stdin: bytes) -> tuple[_Run, Outcome | None]:
        process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
            process_group=0,
            **_unprivileged(),
        )
        run = _Run(bytearray(), bytearray())
        outcome: Outcome | None = None
        try:
            async with asyncio.timeout(self.limits.wall_s):
                await self._exchange(process, stdin, run)
        except TimeoutError:
            outcome = Outcome.WALL_TIME
        except _OutputExceeded:
            outcome = Outcome.OUTPUT
        finally:
            if process.returncode is None:  # not reaped yet: its group id is ours
                _kill_group(process.pid)
            run.exit_code = await _reap(process)
        return run, outcome

    async def _exchange(
        self, process: asyncio.subprocess.Process, stdin: bytes, run: _Run
    ) -> None:
        assert process.stdin and process.stdout and process.stderr
        try:
            process.stdin.write(stdin)
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):  # pragma: no cover - a race
            pass  # the code exited before reading it all; the exit code says why
        limit = self.limits.output_bytes
        exceeded = False
        try:
            # A task group, not gather: when one stream overflows, the other reader
            # is cancelled too, so that _reap is the only reader left.
            async with asyncio.TaskGroup() as group:
                group.create_task(_drain(process.stdout, run.results, limit))
                group.create_task(_drain(process.stderr, run.output, limit))
        except* _OutputExceeded:
            exceeded = True
        if exceeded:
            raise _OutputExceeded
        await process.wait()


def _unprivileged() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # pragma: no cover - the group ended on its own
        pass


async def _reap(process: asyncio.subprocess.Process) -> int:
    """The exit code, once the pipes are read to their end.

    asyncio's ``wait()`` also waits for the pipes to close, and a pipe whose reader
    stopped at the output cap is paused: read what is left (the writers are dead)
    before waiting.

    Raises:
        SandboxUnavailable: the sandbox outlived SIGKILL (never seen; a host fault).
    """
    assert process.stdout and process.stderr
    try:
        async with asyncio.timeout(REAP_S):
            await asyncio.gather(_discard(process.stdout), _discard(process.stderr))
            return await process.wait()
    except TimeoutError as exc:  # pragma: no cover - a host fault, see above
        raise SandboxUnavailable("the sandbox did not exit after SIGKILL") from exc


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(CHUNK):
        pass


async def _drain(stream: asyncio.StreamReader, sink: bytearray, limit: int) -> None:
    while chunk := await stream.read(CHUNK):
        sink += chunk[: max(limit - len(sink), 0)]
        if len(sink) >= limit:
            raise _OutputExceeded


__all__ = [
    "BubblewrapSandbox",
    "CaseResult",
    "CodeRunner",
    "Outcome",
    "SandboxLimits",
    "SandboxReport",
]
