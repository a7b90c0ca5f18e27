"""Runs candidates' code against a question's hidden tests inside bubblewrap.

One run is one ``bwrap`` process holding a system Python (``/usr/bin/python3``) and a
small harness. Nothing of the server is visible inside:

- namespaces: ``--unshare-all`` (user, pid, network, ipc, uts, cgroup), so no network
  beyond an empty loopback, and processes die with the run (``--die-with-parent``,
  and the pid namespace ends with its first process);
- files: ``/usr`` read-only (plus the ``/lib``, ``/lib64``, ``/bin`` links), a fresh
  ``/proc``, a fresh ``/dev`` remounted read-only (its ``/dev/shm`` is no place to
  keep memory in), a private size-limited ``/tmp`` (the only writable file system);
  no ``/etc``, no ``/home``, no ``/root``, no repository; the root is read-only;
- system calls: no user namespace inside (``--disable-userns``), and the seccomp
  filter of :mod:`evaluators.seccomp` (no io_uring, bpf, ptrace, keys, namespaces,
  mounts, System V shared memory...);
- environment: ``bwrap`` starts with an empty environment (otherwise its own process,
  pid 1 inside, would show the server's variables in ``/proc/1/environ``) and
  ``--clearenv`` for the code;
- identity: a server running as root drops to ``nobody`` before starting ``bwrap``
  (``setpriv`` on the command line, so that it works under any event loop: uvloop
  refuses ``subprocess_exec``'s ``user``, ``group`` and ``process_group``), so that
  the process limit applies (the kernel never limits root's processes) and no
  capability is kept;
- limits (``prlimit`` inside the sandbox, so that they bind the code and not
  ``bwrap``): CPU seconds, address space, processes, file size, open files, no core
  files; outside, a wall-clock timeout and an output cap, both ending the run with
  SIGKILL to its process group;
- lifetime: ``bwrap`` gets SIGKILL if the server dies (``setpriv --pdeathsig``), and
  ``timeout`` inside ends the code one second after the wall-clock limit even if
  nobody is left to stop it;
- load: at most ``concurrency`` runs at once per sandbox object (waiting for a turn
  does not count against the wall-clock limit).

Memory: each process of a run is held to ``memory_bytes`` of address space, and the
only writable file system is the ``tmp_bytes`` ``/tmp``; a run's worst case is about
``processes * memory_bytes + tmp_bytes``, and ``concurrency`` runs at once bound the
host's share. (No cgroup is used: it would need a delegated cgroup v2 subtree with
the memory controller, which the machines this was written on do not have.)

Only the arguments of each case go in; the harness sends back each return value, and
the comparison with the expected value happens outside, out of the code's reach
(:mod:`evaluators.sandbox_report`). The code runs in a child of the harness that
never holds the marker of the results, so it cannot forge them.
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
from typing import Protocol

from evaluators import seccomp
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
        concurrency: runs at once; more wait for a turn (default: one per core).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        python: str = "/usr/bin/python3",
        bwrap: str = "bwrap",
        concurrency: int | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self._python = python
        self._bwrap = bwrap
        self.concurrency = concurrency or default_concurrency()
        self._turns = asyncio.Semaphore(self.concurrency)
        self._filter: bytes | None = None

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
        async with self._turns:
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

    def command(self, *, seccomp_fd: int) -> list[str]:
        """The full command line of one run, reading its filter from ``seccomp_fd``.

        Raises:
            SandboxUnavailable: ``bwrap``, ``setpriv`` or the interpreter is missing.
        """
        bwrap = shutil.which(self._bwrap)
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: run `make system-deps`"
            )
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxUnavailable("setpriv (util-linux) is not installed")
        if not self._python.startswith("/usr/") or not os.path.exists(self._python):
            raise SandboxUnavailable(f"no interpreter under /usr at {self._python}")
        # The sandbox dies with the server (pdeathsig), and ends at the wall-clock
        # limit even if nobody is left to kill it (timeout inside).
        parent = [setpriv, *_unprivileged(), "--pdeathsig", "KILL", "--"]
        inside = self._limited_python()
        namespaces = self._namespace_arguments()
        return [
            *parent,
            bwrap,
            *namespaces,
            "--seccomp",
            str(seccomp_fd),
            "--",
            *inside,
        ]

    def _namespace_arguments(self) -> list[str]:
        arguments = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
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
            "--remount-ro", "/dev",
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
        process = await self._spawn()
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

    async def _spawn(self) -> asyncio.subprocess.Process:
        # Only options that both asyncio and uvloop accept: the new session makes
        # the process the leader of its own group, which _kill_group ends.
        program = self._seccomp_program()
        reader, writer = os.pipe()
        try:
            os.write(writer, program)  # far below a pipe's buffer
            os.close(writer)
            writer = -1
            return await asyncio.create_subprocess_exec(
                *self.command(seccomp_fd=reader),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={},
                start_new_session=True,
                pass_fds=(reader,),
            )
        finally:
            os.close(reader)
            if writer >= 0:
                os.close(writer)

    def _seccomp_program(self) -> bytes:
        if self._filter is None:
            try:
                self._filter = seccomp.program()
            except seccomp.UnsupportedArchitecture as exc:
                raise SandboxUnavailable(str(exc)) from exc
        return self._filter

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


def default_concurrency() -> int:
    """Runs at once by default: one per core."""
    return os.cpu_count() or 1


def _unprivileged() -> list[str]:
    """``setpriv`` options: root becomes ``nobody`` with no groups; others stay."""
    if os.geteuid() != 0:
        return []
    return [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


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
