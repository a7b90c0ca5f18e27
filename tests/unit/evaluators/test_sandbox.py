"""The sandbox's pure parts (evaluators/sandbox.py); real runs are integration tests."""

from __future__ import annotations

import os

import pytest

from evaluators.config import GraderConfig
from evaluators.errors import SandboxUnavailable
from evaluators.sandbox import (
    BubblewrapSandbox,
    SandboxLimits,
    _unprivileged,
)


def test_limits_come_from_the_config() -> None:
    limits = SandboxLimits.from_config(GraderConfig(sandbox_cpu_s=7, sandbox_wall_s=9))

    assert (limits.cpu_s, limits.wall_s) == (7, 9)


def test_a_missing_bwrap_is_reported_with_the_fix() -> None:
    with pytest.raises(SandboxUnavailable, match="make system-deps") as caught:
        BubblewrapSandbox(bwrap="no-such-bwrap-here").command()

    assert not caught.value.retryable


@pytest.mark.parametrize("python", ["/root/.pyenv/bin/python", "/usr/bin/no-python"])
def test_the_interpreter_must_exist_under_usr(python: str) -> None:
    with pytest.raises(SandboxUnavailable, match="interpreter"):
        BubblewrapSandbox(python=python, bwrap="sh").command()


def test_the_command_exposes_only_usr_and_applies_the_limits() -> None:
    limits = SandboxLimits(cpu_s=3, memory_bytes=1000, processes=4)

    command = BubblewrapSandbox(limits, bwrap="sh").command()

    binds = [command[i + 1] for i, arg in enumerate(command) if arg.endswith("bind")]
    assert set(binds) <= {"/usr", "/bin", "/lib", "/lib64"}
    for flag in ("--unshare-all", "--clearenv", "--die-with-parent", "--new-session"):
        assert flag in command
    assert {"--cpu=3:4", "--as=1000", "--nproc=4", "--core=0"} <= set(command)
    assert command[command.index("--pdeathsig") + 1] == "KILL"
    assert command[command.index("--signal=KILL") + 1] == "6"  # wall 5 s + 1


def test_hosts_without_merged_usr_bind_their_library_folders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os.path, "islink", lambda path: False)
    monkeypatch.setattr(os.path, "isdir", lambda path: path == "/lib")

    command = BubblewrapSandbox(bwrap="sh").command()

    assert "--symlink" not in command
    assert command[command.index("/lib") - 1] == "--ro-bind"
    assert "/lib64" not in command


def test_only_root_drops_to_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _unprivileged() == {}

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _unprivileged() == {"user": 65534, "group": 65534, "extra_groups": []}
