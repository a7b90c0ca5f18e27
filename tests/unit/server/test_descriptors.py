"""The descriptor guard: candidate sockets stay out of the descriptors' reserve."""

from __future__ import annotations

import pytest

from server.descriptors import RECOUNT_EVERY, DescriptorGuard, fits


class Counted:
    """A fake ``/proc/self/fd`` count, and how often it was read."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.value


def test_a_socket_fits_while_the_reserve_stays_free() -> None:
    assert fits(700, 1000, 300)
    assert not fits(701, 1000, 300)


def test_the_guard_refuses_once_the_next_socket_would_use_the_reserve() -> None:
    count = Counted(690)
    guard = DescriptorGuard(300, limit=lambda: 1000, count=count)
    admitted = 0
    while guard.admit():
        admitted += 1
        count.value += 1  # the kernel accepted it: one more descriptor
    assert admitted == 11  # 690 ... 700 open, the new socket's own included
    assert not guard.admit()
    count.value = 650  # sockets closed meanwhile
    assert guard.admit()


def test_far_from_the_limit_the_guard_counts_only_now_and_then() -> None:
    count = Counted(10)
    guard = DescriptorGuard(300, limit=lambda: 100_000, count=count)
    for _ in range(10 * RECOUNT_EVERY):
        assert guard.admit()
    assert count.reads == 10


def test_an_unlimited_or_uncountable_process_admits_everything() -> None:
    assert DescriptorGuard(300, limit=lambda: None, count=lambda: 10**9).admit()
    assert DescriptorGuard(300, limit=lambda: 10, count=lambda: None).admit()


def test_a_negative_reserve_is_refused() -> None:
    with pytest.raises(ValueError):
        DescriptorGuard(-1)
