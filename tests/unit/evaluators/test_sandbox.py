"""The sandbox's pure parts (evaluators/sandbox.py); real runs are integration tests."""

from __future__ import annotations

import os
import shutil

import pytest

from evaluators import TaskGrader, build_grader
from evaluators.config import GraderConfig
from evaluators.errors import SandboxUnavailable
from evaluators.sandbox import (
    BubblewrapSandbox,
    SandboxLimits,
    _unprivileged,
)
from protocol.definition import CodeTests


def test_limits_come_from_the_config() -> None:
    limits = SandboxLimits.from_config(GraderConfig(sandbox_cpu_s=7, sandbox_wall_s=9))

    assert (limits.cpu_s, limits.wall_s) == (7, 9)


def test_a_missing_bwrap_is_reported_with_the_fix() -> None:
    with pytest.raises(SandboxUnavailable, match="make system-deps") as caught:
        BubblewrapSandbox(bwrap="no-such-bwrap-here").command(seccomp_fd=3)

    assert not caught.value.retryable


@pytest.mark.parametrize("python", ["/root/.pyenv/bin/python", "/usr/bin/no-python"])
def test_the_interpreter_must_exist_under_usr(python: str) -> None:
    with pytest.raises(SandboxUnavailable, match="interpreter"):
        BubblewrapSandbox(python=python, bwrap="sh").command(seccomp_fd=3)


def test_the_command_exposes_only_usr_and_applies_the_limits() -> None:
    limits = SandboxLimits(cpu_s=3, memory_bytes=1000, processes=4)

    command = BubblewrapSandbox(limits, bwrap="sh").command(seccomp_fd=3)

    binds = [command[i + 1] for i, arg in enumerate(command) if arg.endswith("bind")]
    assert set(binds) <= {"/usr", "/bin", "/lib", "/lib64"}
    for flag in ("--unshare-all", "--clearenv", "--die-with-parent", "--new-session"):
        assert flag in command
    assert "--disable-userns" in command
    assert command[command.index("--seccomp") + 1] == "3"
    assert {"--cpu=3:4", "--as=1000", "--nproc=4", "--core=0"} <= set(command)
    assert command[command.index("--pdeathsig") + 1] == "KILL"
    assert command[command.index("--signal=KILL") + 1] == "6"  # wall 5 s + 1


def test_hosts_without_merged_usr_bind_their_library_folders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os.path, "islink", lambda path: False)
    monkeypatch.setattr(os.path, "isdir", lambda path: path == "/lib")

    command = BubblewrapSandbox(bwrap="sh").command(seccomp_fd=3)

    assert "--symlink" not in command
    assert command[command.index("/lib") - 1] == "--ro-bind"
    assert "/lib64" not in command


def test_only_root_drops_to_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _unprivileged() == []

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _unprivileged() == ["--reuid=65534", "--regid=65534", "--clear-groups"]


def test_privileges_are_dropped_on_the_command_line_before_bwrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvloop refuses subprocess_exec's user/group/process_group: nothing of it may
    # depend on them.
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    command = BubblewrapSandbox(bwrap="sh").command(seccomp_fd=3)

    bwrap = command.index(str(shutil.which("sh")))
    assert command[0].endswith("setpriv")
    assert "--reuid=65534" in command[:bwrap]
    assert command[command.index("--pdeathsig") + 1] == "KILL"


def test_dev_is_read_only_and_tmp_is_the_only_sized_tmpfs() -> None:
    command = BubblewrapSandbox(SandboxLimits(tmp_bytes=4096), bwrap="sh").command(
        seccomp_fd=3
    )

    assert command[command.index("--dev") + 1] == "/dev"
    read_only = [
        command[i + 1] for i, arg in enumerate(command) if arg == "--remount-ro"
    ]
    assert read_only == ["/dev", "/"]
    tmpfs = [command[i + 1] for i, arg in enumerate(command) if arg == "--tmpfs"]
    assert tmpfs == ["/tmp"]
    assert command[command.index("--tmpfs") - 2 : command.index("--tmpfs")] == [
        "--size",
        "4096",
    ]


def test_a_missing_setpriv_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "setpriv" else real(name)
    )

    with pytest.raises(SandboxUnavailable, match="setpriv"):
        BubblewrapSandbox(bwrap="sh").command(seccomp_fd=3)


def test_the_concurrency_defaults_to_one_run_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 6)

    assert BubblewrapSandbox().concurrency == 6
    assert BubblewrapSandbox(concurrency=2).concurrency == 2


def test_build_grader_gives_the_sandbox_its_concurrency() -> None:
    grader = build_grader(GraderConfig(sandbox_concurrency=3))

    assert isinstance(grader, TaskGrader)
    assert isinstance(grader.runner, BubblewrapSandbox)
    assert grader.runner.concurrency == 3


async def test_a_host_without_a_seccomp_table_cannot_run_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    tests = CodeTests(entrypoint="f", cases=[{"args": [], "expected": 1}])

    with pytest.raises(SandboxUnavailable, match="riscv64"):
        await BubblewrapSandbox(bwrap="sh").run("def f(): return 1", tests)
