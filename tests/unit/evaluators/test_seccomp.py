"""The sandbox's seccomp program (evaluators/seccomp.py), run by a small BPF
interpreter; the kernel's verdicts are in tests/integration/test_sandbox_attacks.py."""

from __future__ import annotations

import errno
import struct

import pytest

from evaluators import seccomp
from evaluators.seccomp import (
    AARCH64,
    DENIED,
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_PROCESS,
    X86_64,
    Architecture,
    UnsupportedArchitecture,
)

EPERM = RET_ERRNO | errno.EPERM
ENOSYS = RET_ERRNO | errno.ENOSYS
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17
THREAD_FLAGS = 0x003D0F00  # what the C library passes for pthread_create


def seccomp_data(arch: int, nr: int, arg0: int = 0) -> bytes:
    return struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)


def run(program: bytes, data: bytes) -> int:
    """A classic BPF interpreter for the opcodes the program uses."""
    instructions: list[tuple[int, int, int, int]] = [
        struct.unpack_from("=HBBI", program, offset)
        for offset in range(0, len(program), 8)
    ]
    accumulator = 0
    pc = 0
    while True:
        code, true, false, k = instructions[pc]
        pc += 1
        if code == seccomp.LD_W_ABS:
            (accumulator,) = struct.unpack_from("=I", data, k)
        elif code == seccomp.RET_K:
            return k
        elif code == seccomp.JEQ_K:
            pc += true if accumulator == k else false
        elif code == seccomp.JGE_K:
            pc += true if accumulator >= k else false
        elif code == seccomp.JSET_K:
            pc += true if accumulator & k else false
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def verdict(arch: Architecture, name: str, arg0: int = 0) -> int:
    number = arch.numbers[name]
    return run(seccomp.program(arch), seccomp_data(arch.audit_arch, number, arg0))


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=lambda arch: arch.name)
@pytest.mark.parametrize("name", DENIED)
def test_each_denied_call_is_refused_with_eperm(arch: Architecture, name: str) -> None:
    assert verdict(arch, name) == EPERM


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=lambda arch: arch.name)
def test_forks_and_threads_pass_but_clone_into_a_namespace_does_not(
    arch: Architecture,
) -> None:
    assert verdict(arch, "clone", SIGCHLD) == RET_ALLOW
    assert verdict(arch, "clone", THREAD_FLAGS) == RET_ALLOW
    assert verdict(arch, "clone", CLONE_NEWUSER | SIGCHLD) == EPERM
    assert verdict(arch, "clone", CLONE_NEWNET) == EPERM


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=lambda arch: arch.name)
def test_clone3_is_answered_as_missing_so_that_libc_falls_back(
    arch: Architecture,
) -> None:
    assert verdict(arch, "clone3") == ENOSYS


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=lambda arch: arch.name)
def test_ordinary_calls_are_allowed(arch: Architecture) -> None:
    program = seccomp.program(arch)

    for number in (0, 1, 2, 3, 60, 63, 231, 500):  # read, write, exit, getdents...
        if number not in arch.numbers.values():
            assert run(program, seccomp_data(arch.audit_arch, number)) == RET_ALLOW


def test_another_architecture_kills_the_process() -> None:
    i386 = 0x40000003

    assert run(seccomp.program(X86_64), seccomp_data(i386, 1)) == RET_KILL_PROCESS
    aarch64_call = seccomp_data(AARCH64.audit_arch, 1)
    assert run(seccomp.program(X86_64), aarch64_call) == RET_KILL_PROCESS


def test_x32_numbers_are_refused_on_x86_64() -> None:
    x32_write = seccomp.X32_SYSCALL_BIT | 1

    program = seccomp.program(X86_64)

    assert run(program, seccomp_data(X86_64.audit_arch, x32_write)) == EPERM
    assert run(seccomp.program(AARCH64), seccomp_data(AARCH64.audit_arch, 1)) == (
        RET_ALLOW
    )


def test_every_jump_lands_inside_the_program() -> None:
    for arch in (X86_64, AARCH64):
        instructions = seccomp.instructions(arch)
        for index, (code, true, false, _k) in enumerate(instructions):
            if code != seccomp.RET_K:
                assert index + 1 + max(true, false) < len(instructions)
        assert instructions[-1] == (seccomp.RET_K, 0, 0, RET_ALLOW)


def test_the_host_architecture_is_found_or_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert seccomp.host_architecture() is AARCH64

    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    with pytest.raises(UnsupportedArchitecture, match="riscv64"):
        seccomp.host_architecture()
