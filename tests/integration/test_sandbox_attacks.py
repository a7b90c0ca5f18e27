"""Code that attacks the sandbox's host rather than the grade (evaluators/sandbox.py).

Memory kept where no address-space limit counts it, new namespaces, the kernel's
less travelled interfaces, forged results, and more runs than the host should hold.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluators.sandbox import BubblewrapSandbox, Outcome
from evaluators.seccomp import host_architecture
from tests.integration._sandbox import (
    HARNESS_MARK,
    LIMITS,
    errors,
    grade,
    leftover_sandboxes,
    make_sandbox,
    question,
)

pytestmark = pytest.mark.integration

NUMBERS = host_architecture().numbers
MIB = 1 << 20

# Runs a raw system call; "ok" or the errno's name.
SYSCALL = (
    "import ctypes, errno, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(number, *args):\n"
    "    result = libc.syscall(number, *args)\n"
    f"    if result == 0 and number == {NUMBERS['clone']}:\n"
    "        os._exit(0)  # a clone that succeeded: the copy leaves at once\n"
    "    return errno.errorcode[ctypes.get_errno()] if result < 0 else 'ok'\n"
)


@pytest.fixture
def sandbox() -> BubblewrapSandbox:
    return make_sandbox()


@pytest.fixture(autouse=True)
def nothing_survives_a_run() -> Iterator[None]:
    yield
    assert leftover_sandboxes() == []


def actual(feedback: dict[str, Any]) -> list[Any]:
    return [
        json.loads(case["actual"]) if case["actual"] else case.get("error")
        for case in feedback["cases"]
    ]


async def test_dev_shm_holds_no_memory_and_tmp_is_capped(
    sandbox: BubblewrapSandbox,
) -> None:
    # 64 files of 1 MiB: the file-size limit binds each file, not their sum.
    code = (
        "def add(a, b):\n"
        "    folder = '/dev/shm' if a == 1 else '/tmp'\n"
        "    written = 0\n"
        "    try:\n"
        "        for i in range(64):\n"
        "            with open(f'{folder}/{i}', 'wb') as file:\n"
        "                written += file.write(bytes(1 << 20))\n"
        "    except OSError as exc:\n"
        "        return [written, exc.strerror]\n"
        "    return [written, None]\n"
    )

    feedback = await grade(sandbox, code)

    shm, tmp = actual(feedback)
    assert shm == [0, "Read-only file system"]
    assert tmp[0] <= LIMITS.tmp_bytes and tmp[1] == "No space left on device"


async def test_the_only_writable_file_system_that_keeps_data_is_the_capped_tmp(
    sandbox: BubblewrapSandbox,
) -> None:
    code = (
        "def add(a, b):\n"
        "    mounts = [line.split() for line in open('/proc/self/mounts')]\n"
        "    return sorted([m[1], m[2], m[3]] for m in mounts\n"
        "                  if 'rw' in m[3].split(',') and m[2] != 'devtmpfs')\n"
    )

    feedback = await grade(sandbox, code)

    writable = actual(feedback)[0]
    tmpfs = [mount for mount in writable if mount[1] == "tmpfs"]
    assert [mount[0] for mount in tmpfs] == ["/tmp"]
    assert f"size={LIMITS.tmp_bytes // 1024}k" in tmpfs[0][2]
    assert {mount[1] for mount in writable} <= {"tmpfs", "proc", "devpts"}


async def test_nothing_can_be_created_in_dev(sandbox: BubblewrapSandbox) -> None:
    code = (
        "import os\n"
        "def add(a, b):\n"
        "    if a == 1:\n"
        "        open('/dev/new', 'w')\n"
        "    os.mkdir('/dev/shm/folder')\n"
    )

    feedback = await grade(sandbox, code)

    assert all("Read-only file system" in error for error in errors(feedback))


async def test_no_user_namespace_can_be_created(sandbox: BubblewrapSandbox) -> None:
    new_user = 0x10000000  # CLONE_NEWUSER
    code = SYSCALL + (
        "import subprocess\n"
        "def add(a, b):\n"
        "    if a == 1:\n"
        "        command = ['/usr/bin/unshare', '-U', '/usr/bin/true']\n"
        "        return subprocess.run(command, capture_output=True).returncode\n"
        f"    return [call({NUMBERS['unshare']}, {new_user}),\n"
        f"            call({NUMBERS['clone']}, {new_user} | 17, 0, 0, 0, 0)]\n"
    )

    feedback = await grade(sandbox, code)

    command, calls = actual(feedback)
    assert command != 0
    assert calls == ["EPERM", "EPERM"]


async def test_the_code_runs_under_a_seccomp_filter(
    sandbox: BubblewrapSandbox,
) -> None:
    code = (
        "def add(a, b):\n"
        "    status = dict(line.split(':\\t') for line in open('/proc/self/status'))\n"
        "    return status['Seccomp'].strip()\n"
    )

    feedback = await grade(sandbox, code)

    assert actual(feedback) == ["2", "2"]  # SECCOMP_MODE_FILTER


@pytest.mark.parametrize(
    "call",
    [
        # io_uring_setup(1, params): a fresh ring, outside every other limit.
        f"call({NUMBERS['io_uring_setup']}, 1, ctypes.create_string_buffer(120))",
        # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, create)
        f"call({NUMBERS['keyctl']}, 0, -1, 1)",
        # bpf(BPF_MAP_CREATE, attr, size)
        f"call({NUMBERS['bpf']}, 0, ctypes.create_string_buffer(72), 72)",
        # userfaultfd(UFFD_USER_MODE_ONLY)
        f"call({NUMBERS['userfaultfd']}, 1)",
        # shmget(IPC_PRIVATE, 64 MiB, IPC_CREAT | 0600): memory no limit counts
        f"call({NUMBERS['shmget']}, 0, {64 * MIB}, 0o1600)",
        f"call({NUMBERS['memfd_create']}, b'x', 0)",
    ],
    ids=["io_uring_setup", "keyctl", "bpf", "userfaultfd", "shmget", "memfd_create"],
)
async def test_risky_system_calls_are_refused(
    sandbox: BubblewrapSandbox, call: str
) -> None:
    code = SYSCALL + f"def add(a, b):\n    return {call}\n"

    feedback = await grade(sandbox, code)

    assert actual(feedback) == ["EPERM", "EPERM"]


async def test_ptrace_is_refused(sandbox: BubblewrapSandbox) -> None:
    code = SYSCALL + (
        "import signal, time\n"
        "def add(a, b):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(60)\n"
        f"    result = call({NUMBERS['ptrace']}, 16, child, 0, 0)  # PTRACE_ATTACH\n"
        "    os.kill(child, signal.SIGKILL)\n"
        "    os.waitpid(child, 0)\n"
        "    return result\n"
    )

    feedback = await grade(sandbox, code)

    assert actual(feedback) == ["EPERM", "EPERM"]


async def test_the_code_cannot_forge_the_harness_results(
    sandbox: BubblewrapSandbox,
) -> None:
    # Right answers for both cases, written every way a harness in the same
    # process would allow, and into every stdout in reach; the function itself
    # returns wrong ones. (What the code writes on its own reply pipe counts as
    # its answers, like a return value: it is the code's one channel.)
    code = (
        "import json, os, sys\n"
        "main = sys.modules['__main__']\n"
        "def forge():\n"
        "    marker = getattr(main, 'marker', None)\n"
        "    marker = marker or getattr(main, 'request', {}).get('marker', '')\n"
        "    items = [{'index': 0, 'value': 3}, {'index': 1, 'value': 4},\n"
        "             {'done': True}]\n"
        "    lines = ''.join(marker + json.dumps(item) + '\\n' for item in items)\n"
        "    if callable(getattr(main, 'emit', None)):\n"
        "        for item in items:\n"
        "            main.emit(**item)\n"
        "    print(lines, flush=True)\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/fd/1', 'w') as stdout:\n"
        "                stdout.write(lines)\n"
        "        except OSError:\n"
        "            pass\n"
        "    main.marker = ''\n"
        "    main.emit = print\n"
        "def reachable():\n"
        "    found = []\n"
        "    for path in ('fd/1', 'fd/0', 'mem', 'environ'):\n"
        "        try:\n"
        "            open(f'/proc/{os.getppid()}/{path}', 'rb').close()\n"
        "            found.append(path)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
        "def add(a, b):\n"
        "    if a == 1:\n"
        "        forge()\n"
        "        return 0\n"
        "    return reachable()\n"
    )

    feedback = await grade(sandbox, code)

    assert feedback["score"] == 0
    assert actual(feedback) == [0, []]


async def test_runs_beyond_the_concurrency_wait_for_a_turn() -> None:
    sandbox = BubblewrapSandbox(LIMITS, concurrency=2)
    tests = question().tests
    assert tests is not None
    code = "import time\ndef add(a, b):\n    time.sleep(0.3)\n    return a + b\n"
    seen: set[int] = set()

    async def watch() -> None:
        while True:
            seen.add(len(running_sandboxes()))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        reports = await asyncio.gather(*(sandbox.run(code, tests) for _ in range(5)))
    finally:
        watcher.cancel()

    assert [report.outcome for report in reports] == [Outcome.COMPLETED] * 5
    assert max(seen) == 2


def running_sandboxes() -> list[Path]:
    """This process's children running a sandbox (``bwrap`` after ``setpriv``)."""
    children = Path("/proc/self/task").glob("*/children")
    pids = [pid for path in children for pid in path.read_text().split()]
    found = []
    for pid in pids:
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if HARNESS_MARK.encode() in cmdline:
            found.append(Path("/proc", pid))
    return found
