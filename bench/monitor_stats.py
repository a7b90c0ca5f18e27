"""Pure helpers of ``python -m bench.monitor``: its flags, where each socket goes,
how many questions the interview needs, and the figures and problems of a run.

No I/O and no clock here, so that ``tests/unit/test_bench_monitor.py`` can check them.
Instants are epoch milliseconds; durations milliseconds unless named ``_s``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.instances import Mode, resolve_mode
from bench.server import QUESTION_TYPES, BenchError
from bench.stats import summarize

MAX_QUESTIONS = 200  # protocol/definition.py
EVENTS_PER_ANSWER_AT_LEAST = 2
"""An answer not on the last question makes ``answer_submitted`` and the next
``question_started`` (its grade, ``answer_evaluated``, a third)."""
SPARE_QUESTIONS = 3

Key = tuple[str, int]
"""An answer: ``(session_id, question_index)``."""
Logged = tuple[int, str, str]
"""An event as the bench compares them: ``(cursor, session_id, kind)``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.monitor",
        description="Event latency of the recruiter monitor socket: N candidates "
        "answer at a rate while M monitors watch the interview; then a monitor comes "
        "back with `since` after K missed events (see bench/README.md).",
    )
    add = parser.add_argument
    add("--candidates", type=_positive_int, default=1000, metavar="N")
    add("--monitors", type=_positive_int, default=20, metavar="M")
    add("--answers-per-s", type=_positive, default=50.0, metavar="R")
    add("--measure", type=_positive, default=30.0, metavar="S", help="live window")
    add("--warmup", type=_non_negative, default=5.0, metavar="S")
    add("--missed", type=_non_negative_int, default=10_000, metavar="K")
    add(
        "--fill-answers-per-s",
        type=_positive,
        default=100.0,
        metavar="R",
        help="answers per second while the replaying monitor is away",
    )
    add("--connect-rate", type=_positive, default=200.0, metavar="R")
    add("--connect-concurrency", type=_positive_int, default=100, metavar="C")
    add("--tick-ms", type=_positive_int, default=1000, help="TICK_INTERVAL_MS")
    add(
        "--question-type",
        choices=QUESTION_TYPES,
        default="mcq",
        help="mcq (graded by exact match: cheap) or short_answer (offline grader)",
    )
    add("--instances", type=_positive_int, metavar="K", help="default 1")
    add("--database-url", metavar="URL", help="production mode: a PostgreSQL server")
    add("--redis-url", metavar="URL", help="production mode: the Redis they share")
    add(
        "--settle-timeout",
        type=_positive,
        default=120.0,
        metavar="S",
        help="how long every answer may take to be graded before the replay",
    )
    add(
        "--timeout",
        type=_positive,
        default=1800.0,
        metavar="S",
        help="the whole run, at most (then exit status 2)",
    )
    add("--json", metavar="FILE", help="write the report there")
    return parser


def mode_of(args: argparse.Namespace) -> Mode:
    """The run's mode, once the flags are checked.

    Raises:
        BenchError: flags that make no run (bench/README.md, production mode).
    """
    return resolve_mode(
        server_urls=[],
        server_pids=[],
        instances=args.instances,
        database_url=args.database_url,
        redis_url=args.redis_url,
        jwt_secret=None,
    )


def questions_needed(candidates: int, answers: float, missed: int) -> int:
    """Questions enough that no candidate reaches the last one (the bench never
    answers it, so that no attempt completes): the live window's ``answers`` and
    those that make ``missed`` events, shared over the candidates, and spare ones.

    Raises:
        BenchError: more than an interview may have; the message says what to change.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be positive, got {candidates}")
    fill = math.ceil(missed / EVENTS_PER_ANSWER_AT_LEAST)
    per_candidate = math.ceil((answers + fill) / candidates)
    needed = per_candidate + SPARE_QUESTIONS
    if needed > MAX_QUESTIONS:
        raise BenchError(
            f"{candidates} candidates would each answer {per_candidate} questions "
            f"(an interview has at most {MAX_QUESTIONS}): lower --missed, "
            "--answers-per-s or --measure, or raise --candidates"
        )
    return needed


def enough_events(last: int, *, unsubmitted: int, ungraded: int, wanted: int) -> bool:
    """Whether the log reaches cursor ``wanted`` counting, besides ``last`` (the
    last cursor received), the events still to come of the answers sent: two for
    each whose ``answer_submitted`` has not arrived (it and the next
    ``question_started``), one for each whose ``answer_evaluated`` has not. The
    fill stops answering then, instead of overshooting by every answer in flight."""
    return last + EVENTS_PER_ANSWER_AT_LEAST * unsubmitted + ungraded >= wanted


def placement(instances: int) -> tuple[list[int], int]:
    """Where sockets go: candidates round robin over every instance but the last,
    monitors on the last (with two, every event crosses from one to the other);
    with one instance, everyone on it."""
    if instances < 1:
        raise ValueError(f"instances must be positive, got {instances}")
    if instances == 1:
        return [0], 0
    return list(range(instances - 1)), instances - 1


# -- a monitor's stream ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """How a stream of cursors departs from ``after + 1, after + 2, ...``."""

    events: int
    gaps: int  # cursors skipped
    repeats: int  # cursors at or below one already received

    @property
    def exact(self) -> bool:
        return self.gaps == 0 and self.repeats == 0


def order_of(cursors: Iterable[int], after: int) -> Order:
    """Check one subscription's cursors, which start after ``after`` (the snapshot's
    ``cursor``)."""
    last = after
    events = gaps = repeats = 0
    for cursor in cursors:
        events += 1
        if cursor <= last:
            repeats += 1
            continue
        gaps += cursor - last - 1
        last = cursor
    return Order(events, gaps, repeats)


def event_latencies(
    acks: Mapping[Key, float], arrivals: Iterable[tuple[Key, float]]
) -> tuple[list[float], int]:
    """Each arrival at a monitor of an acknowledged answer's ``answer_submitted``:
    the arrival time minus the acknowledgement's (negative when the event came
    first); and how many arrivals match no acknowledgement."""
    latencies: list[float] = []
    unmatched = 0
    for key, at in arrivals:
        acked = acks.get(key)
        if acked is None:
            unmatched += 1
        else:
            latencies.append(at - acked)
    return latencies, unmatched


def undelivered(acked: Iterable[Key], seen: Iterable[Iterable[Key]]) -> int:
    """Acknowledged answers whose ``answer_submitted`` some monitor never received,
    counted once per monitor."""
    wanted = set(acked)
    return sum(len(wanted - set(keys)) for keys in seen)


def latency_figures(
    acks: Mapping[Key, float],
    sent: Mapping[Key, float],
    arrivals: Sequence[Sequence[tuple[Key, float]]],
) -> dict[str, Any]:
    """The figures of the answers of one phase: ``acks`` and ``sent`` (when each
    answer was acknowledged and sent), and each monitor's arrivals."""
    from_ack: list[float] = []
    from_sent: list[float] = []
    unmatched = 0
    for monitor in arrivals:
        mine = [(key, at) for key, at in monitor if key in acks]
        latencies, missing = event_latencies(acks, mine)
        from_ack += latencies
        unmatched += missing
        from_sent += event_latencies(sent, mine)[0]
    ack_ms = [acks[key] - sent[key] for key in acks if key in sent]
    return {
        "answers": len(acks),
        "ack_ms": summarize(ack_ms).as_dict(),
        "event_after_ack_ms": summarize(from_ack).as_dict(),
        "event_after_send_ms": summarize(from_sent).as_dict(),
        "event_before_ack": sum(1 for value in from_ack if value < 0),
        "deliveries": len(from_ack),
        "undelivered": undelivered(
            acks, ([key for key, _ in monitor] for monitor in arrivals)
        ),
        "unmatched": unmatched,
    }


# -- the replay -----------------------------------------------------------------------


def replay_problems(
    replayed: Sequence[Logged],
    reference: Sequence[Logged],
    *,
    since: int,
    head: int,
) -> list[str]:
    """What is wrong with a replay after ``since`` up to ``head``, compared with
    what a monitor that stayed received (``reference``, itself in cursor order)."""
    problems: list[str] = []
    expected = [event for event in reference if since < event[0] <= head]
    if [event[0] for event in expected] != list(range(since + 1, head + 1)):
        problems.append(
            f"the staying monitor does not hold every event {since + 1}..{head}"
        )
    counted = len(replayed) == head - since
    if not counted:
        problems.append(f"replayed {len(replayed)} events, expected {head - since}")
    order = order_of((event[0] for event in replayed), since)
    if not order.exact:
        problems.append(
            f"replay out of order: {order.gaps} skipped, {order.repeats} repeated"
        )
    elif counted and list(replayed) != expected:
        problems.append("replayed events differ from those the staying monitor got")
    return problems


# -- the report -----------------------------------------------------------------------


def run_problems(report: Mapping[str, Any]) -> list[str]:
    """Why a run is not clean (exit status 1)."""
    problems: list[str] = []
    connect = report["connect"]
    if connect["failed"]:
        problems.append(f"{connect['failed']} candidates failed to attach")
    streams = report["streams"]
    if streams["gaps"] or streams["repeats"]:
        problems.append(
            f"monitor streams: {streams['gaps']} cursors skipped, "
            f"{streams['repeats']} repeated"
        )
    if streams["closes"]:
        problems.append(f"monitors closed by the server: {streams['closes']}")
    if streams["errors"]:
        problems.append(f"errors sent to monitors: {streams['errors']}")
    answers = report["answers"]
    if answers["errors"] or answers["unacknowledged"]:
        problems.append(
            f"answers: errors {answers['errors']}, "
            f"{answers['unacknowledged']} never acknowledged"
        )
    for phase in ("live", "fill"):
        figures = report[phase]
        if figures["undelivered"]:
            problems.append(
                f"{phase}: {figures['undelivered']} answer_submitted never reached "
                "a monitor"
            )
    if not report["settled"]:
        problems.append("not every answer was graded before the replay")
    replay = report["replay"]
    if replay is not None:
        if not replay["recovered"]:
            problems.append("the replay's snapshot was not recovered")
        problems += replay["problems"]
    return problems


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value
