"""Pure helpers of the bench: tick alignment, lateness, percentiles, /proc parsing.

No I/O and no clock here, so that ``tests/unit/test_bench.py`` can check them.
Times are milliseconds (epoch milliseconds for instants).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def intended_tick(deadline: int, remaining_ms: int, tick_ms: int) -> int:
    """When the server meant to send a tick (PROTOCOL.md: ticks are aligned to the
    deadline): ``deadline - ceil(remaining_ms / tick_ms) * tick_ms``.

    A tick sent a little late carries a ``remaining_ms`` a little under a whole number
    of intervals; rounding up recovers the interval boundary it belonged to.
    """
    if tick_ms <= 0:
        raise ValueError(f"tick_ms must be positive, got {tick_ms}")
    return deadline - math.ceil(remaining_ms / tick_ms) * tick_ms


def count_aligned(deadline: int, tick_ms: int, lo: int, hi: int) -> int:
    """How many instants ``p`` in ``[lo, hi)`` lie a whole number of ticks from
    ``deadline`` (``p ≡ deadline mod tick_ms``): the ticks a socket attached to that
    deadline should receive in that span."""
    if tick_ms <= 0:
        raise ValueError(f"tick_ms must be positive, got {tick_ms}")
    if hi <= lo:
        return 0
    return (hi - 1 - deadline) // tick_ms - (lo - 1 - deadline) // tick_ms


def expected_ticks(
    deadline: int,
    tick_ms: int,
    *,
    attached_from: int,
    attached_until: int,
    window: tuple[int, int],
) -> int:
    """Ticks due while a socket was attached to one question (server times).

    The server's first tick after attaching is the first boundary strictly after the
    attach time; boundaries at or after ``attached_until`` (the next question's
    ``state``, or the socket's close) belong to no tick of this question. Only
    boundaries inside ``window`` (start inclusive, end exclusive) count.
    """
    start, end = window
    return count_aligned(
        deadline, tick_ms, max(attached_from + 1, start), min(attached_until, end)
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least ``q`` % of the
    values at or below it); ``None`` for no values. ``values`` need not be sorted."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Count and percentiles of one series of latencies (milliseconds)."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.p50, "p99": self.p99, "max": self.max}


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, None, None, None)
    ordered = sorted(values)
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def cpu_percent(
    ticks_before: int, ticks_after: int, clk_tck: int, wall_s: float
) -> float:
    """CPU time between two readings of utime+stime as a percentage of one core."""
    if wall_s <= 0:
        raise ValueError(f"wall_s must be positive, got {wall_s}")
    return (ticks_after - ticks_before) / clk_tck / wall_s * 100


def parse_stat_cpu(stat: str) -> int:
    """utime + stime (clock ticks, all threads) from the text of /proc/<pid>/stat.

    The command name (field 2) may hold spaces and parentheses, so fields are counted
    after its last ``)``: utime and stime are fields 14 and 15 of the whole line.
    """
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def parse_stat_comm(stat: str) -> str:
    """The command name (field 2, between the first ``(`` and the last ``)``) from
    the text of /proc/<pid>/stat."""
    return stat[stat.index("(") + 1 : stat.rindex(")")]


def parse_status_rss_kb(status: str) -> int:
    """VmRSS in kB from the text of /proc/<pid>/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line (is the process a zombie?)")


def parse_proc_stat_busy(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all cores from the ``cpu`` line of /proc/stat;
    idle and iowait count as not busy."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(value) for value in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values[:8])
            return total - idle, total
    raise ValueError("no cpu line in /proc/stat")


def per_socket_kb(rss_before_kb: int, rss_after_kb: int, sockets: int) -> float | None:
    if sockets <= 0:
        return None
    return (rss_after_kb - rss_before_kb) / sockets


LOG_PROBLEM_LEVELS = (" WARNING ", " ERROR ", " CRITICAL ")


def log_problems(text: str) -> list[str]:
    """The lines of a server log (``<date> <time> LEVEL logger: message``) logged at
    WARNING or above, in order."""
    return [
        line
        for line in text.splitlines()
        if any(level in line[:40] for level in LOG_PROBLEM_LEVELS)
    ]


LOG_KIND_CHARS = 60


def log_kind(line: str) -> str:
    """A log line without its date and time, its message cut to
    ``LOG_KIND_CHARS``: lines of one kind (but about different sessions) count
    together."""
    parts = line.split(" ", 4)
    if len(parts) < 5:
        return line[:LOG_KIND_CHARS]
    _, _, level, logger, message = parts
    return f"{level} {logger} {message[:LOG_KIND_CHARS]}"


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Add up ``{key: count}`` dictionaries (close codes, error codes...)."""
    total: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))


def split_evenly(total: int, parts: int) -> list[range]:
    """``range(total)`` cut into ``parts`` consecutive ranges whose sizes differ by
    at most one."""
    if parts <= 0:
        raise ValueError(f"parts must be positive, got {parts}")
    size, extra = divmod(total, parts)
    ranges: list[range] = []
    start = 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges
