"""Pure helpers of ``python -m bench.storm``: reconnect backoff, where a displaced
socket reconnects, and the report's figures.

No I/O and no clock here, so that ``tests/unit/test_bench_storm.py`` can check them.
Instants are epoch milliseconds; durations milliseconds unless named ``_s``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import merge_counts, summarize

GRACEFUL = "graceful"
KILL = "kill"
RESTART_KINDS = (GRACEFUL, KILL)
SERVICE_RESTART = 1012
TARGET_ALL_ATTACHED_S = 10.0
TARGET_RESUME_P99_MS = 5000.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff (PROTOCOL.md: a client reconnects with jittered
    exponential backoff): attempt ``k`` (0 for the first reconnect) waits a uniform
    random time in ``[0, min(cap, base * 2**k)]`` ("full jitter")."""

    base_ms: float
    cap_ms: float

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.cap_ms < 0:
            raise ValueError(f"backoff must not be negative: {self}")

    def ceiling_ms(self, attempt: int) -> float:
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        return min(self.cap_ms, self.base_ms * 2.0 ** min(attempt, 60))

    def delay_ms(self, attempt: int, uniform: float) -> float:
        """The wait before ``attempt``; ``uniform`` is a random draw in ``[0, 1)``."""
        if not 0.0 <= uniform <= 1.0:
            raise ValueError(f"uniform must be within [0, 1], got {uniform}")
        return self.ceiling_ms(attempt) * uniform


def reconnect_target(
    socket_index: int, current: int, instances: int, restarted: int
) -> int:
    """Where a socket closed by the restart comes back.

    One instance: the same one (restarted on the same port). Several: a socket of the
    restarted instance goes, one in two (by its index), to the next instance, as a
    load balancer would send half of them elsewhere; the others wait for the
    restarted one. A socket of another instance (closed for another reason) stays.
    """
    if instances < 1:
        raise ValueError(f"instances must be positive, got {instances}")
    if instances == 1 or current != restarted:
        return current
    if socket_index % 2 == 0:
        return (current + 1) % instances
    return current


@dataclass(frozen=True, slots=True)
class Timeline:
    """The restart, seen from the bench (epoch milliseconds)."""

    signalled_at: float  # SIGTERM or SIGKILL sent to the old process
    exited_at: float  # the old process was reaped
    accepting_at: float  # the new process accepted a TCP connection


def storm_figures(
    *,
    kind: str,
    timeline: Timeline,
    resumes: Sequence[Sequence[float]],
    close_codes: Iterable[dict[str, int]],
    refusals: Iterable[dict[str, int]],
    displaced: int,
    not_back: int,
) -> dict[str, Any]:
    """The report's figures from the workers' samples.

    ``resumes``: one ``(closed_at, attached_at, attempts)`` per socket that came
    back (``resume_ms`` from its close, ``resume_after_accepting_ms`` from the later
    of its close and the new process accepting); ``displaced``: sockets the restart
    closed; ``not_back``: sockets closed and not attached again when the run ended.
    """
    latencies = [attached - closed for closed, attached, _ in resumes]
    after_accepting = [
        attached - max(closed, timeline.accepting_at) for closed, attached, _ in resumes
    ]
    attempts = [float(count) for _, _, count in resumes]
    last = max((attached for _, attached, _ in resumes), default=None)
    codes = merge_counts(close_codes)
    refused = merge_counts(refusals)
    all_back_s = None
    after_signal_s = None
    if last is not None and not_back == 0:
        all_back_s = (last - timeline.accepting_at) / 1000
        after_signal_s = (last - timeline.signalled_at) / 1000
    return {
        "kind": kind,
        "displaced": displaced,
        "resumed": len(resumes),
        "not_back": not_back,
        "shutdown_s": (timeline.exited_at - timeline.signalled_at) / 1000,
        "start_s": (timeline.accepting_at - timeline.exited_at) / 1000,
        "all_attached_after_accepting_s": all_back_s,
        "all_attached_after_signal_s": after_signal_s,
        "resume_ms": summarize(latencies).as_dict(),
        "resume_after_accepting_ms": summarize(after_accepting).as_dict(),
        "attempts": summarize(attempts).as_dict(),
        "close_codes": dict(sorted(codes.items())),
        "refusals": dict(collections.Counter(refused).most_common()),
    }


def storm_problems(figures: dict[str, Any]) -> list[str]:
    """What misses issue 13's targets (an empty list: none)."""
    problems: list[str] = []
    if figures["not_back"]:
        problems.append(f"{figures['not_back']} sockets never attached again")
    if figures["resumed"] < figures["displaced"]:
        problems.append(
            f"{figures['resumed']} of {figures['displaced']} displaced sockets resumed"
        )
    all_back = figures["all_attached_after_accepting_s"]
    if all_back is not None and all_back > TARGET_ALL_ATTACHED_S:
        problems.append(
            f"all attached again {all_back:.1f} s after the new process accepted "
            f"(target {TARGET_ALL_ATTACHED_S:.0f} s)"
        )
    p99 = figures["resume_ms"]["p99"]
    if p99 is not None and p99 > TARGET_RESUME_P99_MS:
        problems.append(
            f"resume p99 {p99 / 1000:.1f} s "
            f"(target {TARGET_RESUME_P99_MS / 1000:.0f} s)"
        )
    if figures["kind"] == GRACEFUL:
        others = {
            code: count
            for code, count in figures["close_codes"].items()
            if code != str(SERVICE_RESTART)
        }
        if others:
            problems.append(f"graceful restart closed sockets with {others}, not 1012")
    return problems
