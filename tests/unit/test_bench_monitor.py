"""The pure helpers of ``python -m bench.monitor`` (bench/monitor_stats.py): flags,
placement, question counts, stream order, latencies, the replay check, problems."""

from __future__ import annotations

from typing import Any

import pytest

from bench.monitor import EXIT_ERROR, main as monitor_main
from bench.monitor_stats import (
    Order,
    build_parser,
    enough_events,
    event_latencies,
    latency_figures,
    mode_of,
    order_of,
    placement,
    questions_needed,
    replay_problems,
    run_problems,
    undelivered,
)
from bench.server import BenchError, definition
from protocol.definition import parse_definition

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"


def test_by_default_a_thousand_candidates_twenty_monitors_ten_thousand_missed() -> None:
    args = build_parser().parse_args([])
    assert (args.candidates, args.monitors, args.missed) == (1000, 20, 10_000)
    assert args.question_type == "mcq"
    assert mode_of(args).label == "sqlite, 1 instance"


def test_production_mode_takes_two_instances_on_postgresql_and_redis() -> None:
    argv = ["--instances", "2", "--database-url", PG, "--redis-url", REDIS]
    mode = mode_of(build_parser().parse_args(argv))
    assert (mode.storage, mode.redis, mode.instances) == ("postgresql", True, 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["--instances", "2"],
        ["--instances", "2", "--redis-url", REDIS],
        ["--database-url", PG],
        ["--database-url", "mysql://x/y", "--redis-url", REDIS],
    ],
)
def test_flags_that_make_no_run_are_refused(argv: list[str]) -> None:
    with pytest.raises(BenchError):
        mode_of(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv", [["--candidates", "0"], ["--monitors", "-1"], ["--answers-per-s", "0"]]
)
def test_sizes_and_rates_must_be_positive(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_bad_flags_exit_2_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert monitor_main(["--instances", "2"]) == EXIT_ERROR
    assert capsys.readouterr().err.startswith("bench.monitor: ")


def test_questions_cover_the_live_answers_and_those_of_the_missed_events() -> None:
    # 1,500 live answers and 5,000 for 10,000 events (two at least per answer).
    assert questions_needed(1000, 1500, 10_000) == 7 + 3
    assert questions_needed(300, 1500, 10_000) == 22 + 3
    assert questions_needed(10, 0, 0) == 3


def test_more_questions_than_an_interview_may_have_are_refused() -> None:
    with pytest.raises(BenchError, match="--missed"):
        questions_needed(10, 1500, 10_000)


def test_the_fill_counts_the_events_of_answers_in_flight() -> None:
    assert not enough_events(90, unsubmitted=4, ungraded=1, wanted=100)
    assert enough_events(90, unsubmitted=4, ungraded=2, wanted=100)
    assert enough_events(90, unsubmitted=5, ungraded=0, wanted=100)
    assert enough_events(100, unsubmitted=0, ungraded=0, wanted=100)


def test_the_bench_interview_may_be_multiple_choice() -> None:
    parsed = parse_definition(definition(4, 3600, "mcq"))
    assert [question.type for question in parsed.questions] == ["mcq"] * 4
    with pytest.raises(ValueError):
        definition(4, 3600, "essay")


def test_monitors_go_to_the_last_instance_and_candidates_to_the_others() -> None:
    assert placement(1) == ([0], 0)
    assert placement(2) == ([0], 1)
    assert placement(3) == ([0, 1], 2)
    with pytest.raises(ValueError):
        placement(0)


def test_a_consecutive_stream_is_exact() -> None:
    assert order_of([6, 7, 8], after=5) == Order(events=3, gaps=0, repeats=0)
    assert order_of([], after=5).exact


def test_skipped_and_repeated_cursors_are_counted() -> None:
    assert order_of([1, 2, 5, 6], after=0) == Order(events=4, gaps=2, repeats=0)
    assert order_of([1, 2, 2, 1, 3], after=0) == Order(events=5, gaps=0, repeats=2)
    assert order_of([5], after=5) == Order(events=1, gaps=0, repeats=1)
    assert not order_of([2], after=0).exact


def test_latencies_run_from_the_ack_and_may_be_negative() -> None:
    acks = {("s1", 0): 1000.0, ("s2", 3): 2000.0}
    arrivals = [(("s1", 0), 1004.5), (("s2", 3), 1999.0), (("s9", 0), 5.0)]
    assert event_latencies(acks, arrivals) == ([4.5, -1.0], 1)


def test_each_monitor_missing_an_answer_counts_once() -> None:
    acked = [("s1", 0), ("s1", 1)]
    assert undelivered(acked, [[("s1", 0), ("s1", 1)], [("s1", 1)], []]) == 3


def test_latency_figures_of_a_phase() -> None:
    sent = {("s1", 0): 990.0, ("s1", 1): 1990.0}
    acks = {("s1", 0): 1000.0, ("s1", 1): 2000.0}
    arrivals = [
        [(("s1", 0), 1002.0), (("s1", 1), 2001.0)],
        [(("s1", 0), 999.0)],
    ]
    figures = latency_figures(acks, sent, arrivals)
    assert figures["answers"] == 2
    assert figures["deliveries"] == 3
    assert figures["undelivered"] == 1
    assert figures["event_before_ack"] == 1
    assert figures["event_after_ack_ms"] == {
        "count": 3,
        "p50": 1.0,
        "p99": 2.0,
        "max": 2.0,
    }
    assert figures["event_after_send_ms"]["max"] == 12.0
    assert figures["ack_ms"]["p50"] == 10.0


REFERENCE = [(cursor, f"s{cursor % 2}", "answer_submitted") for cursor in range(1, 11)]


def test_an_exact_replay_has_no_problems() -> None:
    assert replay_problems(REFERENCE[4:], REFERENCE, since=4, head=10) == []


def test_a_short_replay_is_a_problem() -> None:
    problems = replay_problems(REFERENCE[4:9], REFERENCE, since=4, head=10)
    assert problems == ["replayed 5 events, expected 6"]


def test_a_replay_skipping_or_repeating_is_a_problem() -> None:
    skipping = [*REFERENCE[4:6], *REFERENCE[7:], REFERENCE[9]]
    problems = replay_problems(skipping, REFERENCE, since=4, head=10)
    assert problems == ["replay out of order: 1 skipped, 1 repeated"]


def test_a_replay_of_other_events_is_a_problem() -> None:
    other = [(cursor, "s7", kind) for cursor, _, kind in REFERENCE[4:]]
    problems = replay_problems(other, REFERENCE, since=4, head=10)
    assert problems == ["replayed events differ from those the staying monitor got"]


def test_a_reference_with_a_hole_cannot_vouch_for_the_replay() -> None:
    holed = [event for event in REFERENCE if event[0] != 7]
    problems = replay_problems(REFERENCE[4:], holed, since=4, head=10)
    assert problems[0] == "the staying monitor does not hold every event 5..10"


def clean_report() -> dict[str, Any]:
    phase = {"undelivered": 0}
    return {
        "connect": {"failed": 0},
        "streams": {"gaps": 0, "repeats": 0, "closes": {}, "errors": {}},
        "answers": {"errors": {}, "unacknowledged": 0},
        "live": phase,
        "fill": phase,
        "settled": True,
        "replay": {"recovered": True, "problems": []},
    }


def test_a_clean_run_has_no_problems() -> None:
    assert run_problems(clean_report()) == []
    assert run_problems(clean_report() | {"replay": None}) == []


def test_what_makes_a_run_unclean() -> None:
    report = clean_report()
    report["streams"] = {"gaps": 2, "repeats": 0, "closes": {"4008": 1}, "errors": {}}
    report["live"] = {"undelivered": 3}
    report["settled"] = False
    report["replay"] = {"recovered": False, "problems": ["replayed 0 events"]}
    assert run_problems(report) == [
        "monitor streams: 2 cursors skipped, 0 repeated",
        "monitors closed by the server: {'4008': 1}",
        "live: 3 answer_submitted never reached a monitor",
        "not every answer was graded before the replay",
        "the replay's snapshot was not recovered",
        "replayed 0 events",
    ]
