"""Descriptor headroom: a candidate socket is refused at the handshake rather than
let the process run out of file descriptors (issue 13).

Every socket holds a descriptor, and so do the database (a PostgreSQL connection,
or SQLite's database, WAL and shared-memory files per connection), Redis, the
listening sockets and the sandbox's pipes. When sockets take them all, a write of an
already attached candidate fails with "unable to open database file". The guard
keeps ``RESERVED_FDS`` of the soft ``RLIMIT_NOFILE`` for everything but candidate
sockets: a new socket that would eat into the reserve is refused with HTTP 503.

Counting ``/proc/self/fd`` costs a directory listing, so the guard counts exactly
only near the limit and otherwise every :data:`RECOUNT_EVERY` admissions, adding
the sockets admitted since (sockets closed since only make the estimate high).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

RECOUNT_EVERY = 64
"""Admissions between two exact counts, while far from the limit."""


def soft_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` of this process (``None``: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def open_descriptors() -> int | None:
    """How many descriptors this process has open (``None``: cannot tell here)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - no /proc (not Linux)
        return None


def fits(open_fds: int, limit: int, reserved: int) -> bool:
    """Whether ``open_fds`` (the new socket's own included) leaves the reserve."""
    return open_fds <= limit - reserved


class DescriptorGuard:
    """Admits a new candidate socket while descriptors stay out of the reserve."""

    def __init__(
        self,
        reserved: int,
        *,
        limit: Callable[[], int | None] = soft_limit,
        count: Callable[[], int | None] = open_descriptors,
    ) -> None:
        if reserved < 0:
            raise ValueError(f"reserved must not be negative, got {reserved}")
        self.reserved = reserved
        self._limit = limit
        self._count = count
        self._estimate: int | None = None
        self._since = 0

    def admit(self) -> bool:
        """Whether one more socket (already accepted by the kernel) may stay."""
        limit = self._limit()
        if limit is None:
            return True
        estimate = self._estimate
        near = estimate is None or estimate + RECOUNT_EVERY > limit - self.reserved
        if near or self._since >= RECOUNT_EVERY:
            estimate = self._count()
            self._since = 0
            if estimate is None:
                return True
        assert estimate is not None
        if not fits(estimate, limit, self.reserved):
            self._estimate = estimate
            return False
        self._estimate = estimate + 1  # the next socket's descriptor
        self._since += 1
        return True
