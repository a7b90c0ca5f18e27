"""The seccomp filter of the code sandbox, as the classic BPF program ``bwrap`` loads.

``bwrap --seccomp FD`` reads an array of ``struct sock_filter`` from ``FD`` and
installs it just before it starts the code. The program built here:

1. kills the process when the system call comes from another architecture than the
   host's (a 32-bit entry point would number every call differently);
2. on x86_64, refuses the x32 numbers (bit 30 set), which alias the 64-bit calls;
3. refuses with ``EPERM`` the calls the code has no use for and that reach past the
   other limits: ``io_uring_*``, ``bpf``, ``userfaultfd``, the key calls,
   ``perf_event_open``, ``ptrace`` and ``process_vm_*``, the namespace and mount calls
   (``unshare``, ``setns``, ``mount``...), and the memory that no file-size or
   address-space limit counts (System V shared memory and message queues,
   ``memfd_create``);
4. refuses ``clone`` with any ``CLONE_NEW*`` flag (plain forks and threads pass), and
   answers ``clone3`` with ``ENOSYS``: its flags sit behind a pointer that seccomp
   cannot read, and the C library then falls back to ``clone``;
5. allows everything else.

No library writes it: the Debian binding of libseccomp serves the system Python only,
and the program is small enough to read whole. ``tests/unit/evaluators/test_seccomp.py``
runs it through a small BPF interpreter.
"""

from __future__ import annotations

import errno
import platform
import struct
from collections.abc import Mapping
from dataclasses import dataclass

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
NR_OFFSET = 0
ARCH_OFFSET = 4
ARG0_LOW_OFFSET = 16  # the low half of args[0] on a little-endian host

# Classic BPF opcodes (linux/filter.h).
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

X32_SYSCALL_BIT = 0x40000000
CLONE_NAMESPACES = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

DENIED = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "shmget",
    "msgget",
    "memfd_create",
)
"""The calls refused with ``EPERM``, by name."""


@dataclass(frozen=True, slots=True)
class Architecture:
    """One host architecture: its audit number and its system call numbers."""

    name: str
    audit_arch: int
    numbers: Mapping[str, int]
    x32_alias: bool = False


# From the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl and
# include/uapi/asm-generic/unistd.h); calls from 403 on share one numbering.
_COMMON = {
    "pidfd_open": 434,
    "clone3": 435,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}

X86_64 = Architecture(
    "x86_64",
    0xC000003E,
    _COMMON
    | {
        "clone": 56,
        "ptrace": 101,
        "chroot": 161,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "unshare": 272,
        "perf_event_open": 298,
        "setns": 308,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "memfd_create": 319,
        "bpf": 321,
        "userfaultfd": 323,
        "shmget": 29,
        "msgget": 68,
    },
    x32_alias=True,
)

AARCH64 = Architecture(
    "aarch64",
    0xC00000B7,
    _COMMON
    | {
        "clone": 220,
        "ptrace": 117,
        "chroot": 51,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "unshare": 97,
        "perf_event_open": 241,
        "setns": 268,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "memfd_create": 279,
        "bpf": 280,
        "userfaultfd": 282,
        "shmget": 194,
        "msgget": 186,
    },
)

ARCHITECTURES = {
    "x86_64": X86_64,
    "amd64": X86_64,
    "aarch64": AARCH64,
    "arm64": AARCH64,
}


class UnsupportedArchitecture(Exception):
    """The host's architecture has no system call table here."""


def host_architecture() -> Architecture:
    """The running host's architecture.

    Raises:
        UnsupportedArchitecture: neither x86_64 nor aarch64.
    """
    machine = platform.machine().lower()
    try:
        return ARCHITECTURES[machine]
    except KeyError:
        raise UnsupportedArchitecture(
            f"expected an x86_64 or aarch64 host for the seccomp filter, got {machine}"
        ) from None


def _statement(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(code: int, k: int, true: int, false: int) -> tuple[int, int, int, int]:
    return (code, true, false, k)


def instructions(arch: Architecture) -> list[tuple[int, int, int, int]]:
    """The program as ``(code, jt, jf, k)`` tuples; see the module docstring."""
    deny = RET_ERRNO | errno.EPERM
    program = [
        _statement(LD_W_ABS, ARCH_OFFSET),
        _jump(JEQ_K, arch.audit_arch, 1, 0),
        _statement(RET_K, RET_KILL_PROCESS),
        _statement(LD_W_ABS, NR_OFFSET),
    ]
    if arch.x32_alias:
        program += [_jump(JGE_K, X32_SYSCALL_BIT, 0, 1), _statement(RET_K, deny)]
    for name in DENIED:
        program += [_jump(JEQ_K, arch.numbers[name], 0, 1), _statement(RET_K, deny)]
    program += [
        _jump(JEQ_K, arch.numbers["clone3"], 0, 1),
        _statement(RET_K, RET_ERRNO | errno.ENOSYS),
        _jump(JEQ_K, arch.numbers["clone"], 0, 3),
        _statement(LD_W_ABS, ARG0_LOW_OFFSET),
        _jump(JSET_K, CLONE_NAMESPACES, 0, 1),
        _statement(RET_K, deny),
        _statement(RET_K, RET_ALLOW),
    ]
    return program


def program(arch: Architecture | None = None) -> bytes:
    """The program as the bytes of a ``struct sock_filter`` array, host byte order.

    Raises:
        UnsupportedArchitecture: ``arch`` not given and the host is not supported.
    """
    arch = arch or host_architecture()
    return b"".join(struct.pack("=HBBI", *item) for item in instructions(arch))
