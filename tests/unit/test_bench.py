"""The bench's pure helpers: tick alignment, expected ticks, percentiles, /proc,
modes and server instances."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import EXIT_ERROR, build_parser, main as bench_main, options_for
from bench.instances import (
    InstanceFigures,
    Mode,
    instance_of,
    reconnect_instance,
    resolve_mode,
    server_figures,
    sockets_per_instance,
)
from bench.server import BenchError
from bench.stats import (
    count_aligned,
    cpu_percent,
    expected_ticks,
    intended_tick,
    log_kind,
    log_problems,
    merge_counts,
    parse_proc_stat_busy,
    parse_stat_comm,
    parse_stat_cpu,
    parse_status_rss_kb,
    per_socket_kb,
    percentile,
    split_evenly,
    summarize,
)
from bench.storage import database_url as bench_database_url

DEADLINE = 1_000_600_000


def test_an_on_time_tick_is_its_own_boundary() -> None:
    assert intended_tick(DEADLINE, 598_000, 1000) == DEADLINE - 598_000


def test_a_late_tick_maps_back_to_the_boundary_it_belongs_to() -> None:
    # Sent 37 ms late: 37 ms less remains than at the boundary.
    assert intended_tick(DEADLINE, 597_963, 1000) == DEADLINE - 598_000
    assert intended_tick(DEADLINE, 1, 1000) == DEADLINE - 1000


def test_intended_tick_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError):
        intended_tick(DEADLINE, 1000, 0)


def test_count_aligned_counts_boundaries_in_a_half_open_span() -> None:
    # Boundaries at ...,  100, 1100, 2100, ... (deadline 5100, tick 1000).
    assert count_aligned(5100, 1000, 100, 2100) == 2
    assert count_aligned(5100, 1000, 101, 2101) == 2
    assert count_aligned(5100, 1000, 101, 2100) == 1
    assert count_aligned(5100, 1000, 0, 10_000) == 10
    assert count_aligned(5100, 1000, 500, 500) == 0
    assert count_aligned(5100, 1000, 700, 300) == 0


def test_expected_ticks_start_strictly_after_attaching_and_stay_in_the_window() -> None:
    # Attached at 1100 (a boundary): the first tick is due at 2100.
    window = (0, 10_000)
    assert (
        expected_ticks(
            5100, 1000, attached_from=1100, attached_until=4000, window=window
        )
        == 2
    )
    # The window cuts the span: only 3100 lies inside [2500, 3500).
    assert (
        expected_ticks(
            5100, 1000, attached_from=1100, attached_until=9000, window=(2500, 3500)
        )
        == 1
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([], 99) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summarize() -> None:
    summary = summarize([5.0, 1.0, 3.0])
    assert summary.as_dict() == {"count": 3, "p50": 3.0, "p99": 5.0, "max": 5.0}
    assert summarize([]).as_dict() == {
        "count": 0,
        "p50": None,
        "p99": None,
        "max": None,
    }


def test_proc_parsing_and_cpu() -> None:
    # A command name with spaces and a parenthesis must not shift the fields.
    stat = "4242 (python (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100"
    assert parse_stat_cpu(stat) == 300
    assert parse_stat_comm(stat) == "python (x) y"
    busy, total = parse_proc_stat_busy("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 0 0 0 0\n")
    assert (busy, total) == (15, 100)
    status = "Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t  123456 kB\nThreads:\t3\n"
    assert parse_status_rss_kb(status) == 123456
    with pytest.raises(ValueError):
        parse_status_rss_kb("Name:\tzombie\n")
    assert cpu_percent(1000, 1450, 100, 10.0) == pytest.approx(45.0)
    assert per_socket_kb(100_000, 142_500, 1000) == pytest.approx(42.5)
    assert per_socket_kb(1, 2, 0) is None


def test_merge_counts_and_split_evenly() -> None:
    assert merge_counts([{"4008": 1}, {"4008": 2, "1006": 1}]) == {
        "1006": 1,
        "4008": 3,
    }
    assert [len(r) for r in split_evenly(10, 3)] == [4, 3, 3]
    assert [r.start for r in split_evenly(10, 3)] == [0, 4, 7]
    assert sum(len(r) for r in split_evenly(7, 7)) == 7
    with pytest.raises(ValueError):
        split_evenly(5, 0)


# -- instances: modes, round robin, per-instance figures ------------------------------

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
WS_A = "ws://127.0.0.1:8001/ws/candidate"
WS_B = "ws://127.0.0.1:8002/ws/candidate"


def _mode(**given: Any) -> Mode:
    flags: dict[str, Any] = {
        "server_urls": (),
        "server_pids": (),
        "instances": None,
        "database_url": None,
        "redis_url": None,
        "jwt_secret": None,
    }
    flags.update(given)
    return resolve_mode(**flags)


def test_the_default_mode_is_one_sqlite_instance() -> None:
    mode = _mode()
    assert mode == Mode("sqlite", False, 1)
    assert mode.own
    assert mode.label == "sqlite, 1 instance"
    # $JWT_SECRET in the environment does not matter to the bench's own server.
    assert _mode(jwt_secret="x" * 40) == mode


def test_production_mode_is_postgresql_and_redis_on_k_instances() -> None:
    mode = _mode(instances=2, database_url=PG, redis_url=REDIS)
    assert mode == Mode("postgresql", True, 2)
    assert mode.label == "postgresql+redis, 2 instances"
    assert mode.as_dict()["instances"] == 2
    assert _mode(database_url=PG, redis_url=REDIS).instances == 1
    # Redis alone: the SQLite server sends its grading jobs to Redis.
    assert _mode(redis_url=REDIS) == Mode("sqlite", True, 1)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"database_url": PG}, "--database-url needs --redis-url"),
        ({"instances": 2}, "--instances 2 needs --database-url and --redis-url"),
        ({"instances": 2, "redis_url": REDIS}, "needs --database-url and --redis-url"),
        ({"instances": 3, "database_url": PG}, "--database-url needs --redis-url"),
        ({"instances": 0}, "at least 1"),
        ({"database_url": "sqlite:///x.db", "redis_url": REDIS}, "postgresql://"),
        ({"database_url": PG, "redis_url": "http://x"}, "redis://"),
        ({"server_pids": (42,)}, "--server-pid goes with --server-url"),
    ],
)
def test_own_server_flags_that_make_no_mode_are_refused(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(BenchError, match=message):
        _mode(**given)


def test_running_servers_are_one_instance_per_url() -> None:
    mode = _mode(server_urls=(WS_A, WS_B), server_pids=(11, 12), jwt_secret="s")
    assert mode == Mode("external", None, 2)
    assert not mode.own
    assert mode.label == "external, 2 instances"
    assert _mode(server_urls=(WS_A,), jwt_secret="s").instances == 1


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"instances": 2}, "--instances is for the servers the bench starts"),
        ({"database_url": PG, "redis_url": REDIS}, "--database-url, --redis-url are"),
        ({"server_urls": (WS_A, WS_A)}, "given twice"),
        ({"server_pids": (11,)}, "1 --server-pid for 2 --server-url"),
        ({"server_urls": ("ws://example.com:80/ws/candidate",)}, "127.0.0.1"),
        ({"server_urls": ("http://127.0.0.1:80/",)}, "ws://"),
        ({"jwt_secret": None}, "--jwt-secret"),
    ],
)
def test_running_server_flags_that_make_no_mode_are_refused(
    given: dict[str, Any], message: str
) -> None:
    flags: dict[str, Any] = {"server_urls": (WS_A, WS_B), "jwt_secret": "s", **given}
    with pytest.raises(BenchError, match=message):
        _mode(**flags)


def test_sockets_are_split_round_robin_over_all_client_processes() -> None:
    instances = 3
    shares = split_evenly(10, 4)  # the client processes' sockets
    assigned = [
        instance_of(share.start + offset, instances)
        for share in shares
        for offset in range(len(share))
    ]
    assert assigned == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    counts = sockets_per_instance(10, instances)
    assert counts == [assigned.count(index) for index in range(instances)] == [4, 3, 3]
    assert sockets_per_instance(1, 2) == [1, 0]
    assert instance_of(7, 1) == 0
    with pytest.raises(ValueError):
        instance_of(1, 0)
    with pytest.raises(ValueError):
        sockets_per_instance(1, 0)


def test_a_reconnect_resumes_on_another_instance_when_there_are_several() -> None:
    for instances in (2, 3, 5):
        for current in range(instances):
            moved = reconnect_instance(current, instances)
            assert moved != current
            assert 0 <= moved < instances
    assert reconnect_instance(0, 1) == 0
    with pytest.raises(ValueError):
        reconnect_instance(0, 0)


def test_server_figures_are_summed_over_instances() -> None:
    figures = server_figures(
        [
            InstanceFigures(WS_A, 11, 500, 40.0, 100_000, 120_000),
            InstanceFigures(WS_B, 12, 500, 35.5, 90_000, 115_000),
        ],
        opened=1000,
    )
    assert figures["cpu_percent"] == pytest.approx(75.5)
    assert figures["rss_before_kb"] == 190_000
    assert figures["rss_after_kb"] == 235_000
    assert figures["kb_per_socket"] == pytest.approx(45.0)
    rows = figures["instances"]
    assert isinstance(rows, list)
    assert [row["pid"] for row in rows] == [11, 12]
    assert [row["kb_per_socket"] for row in rows] == [40.0, 50.0]


def test_a_total_is_unknown_when_an_instance_is_unknown() -> None:
    figures = server_figures(
        [
            InstanceFigures(WS_A, 11, 1, 40.0, 100, 200),
            InstanceFigures(WS_B, None, 1, None, None, None),
        ],
        opened=2,
    )
    assert figures["cpu_percent"] is None
    assert figures["rss_before_kb"] is None
    assert figures["kb_per_socket"] is None
    assert server_figures([], opened=0)["cpu_percent"] is None


def test_the_bench_database_url_names_the_new_database() -> None:
    assert bench_database_url(PG, "bench_ab12") == (
        "postgresql://postgres@127.0.0.1:5432/bench_ab12"
    )
    with_password = "postgresql+asyncpg://u:p%40ss@db:6543/postgres?ssl=disable"
    assert bench_database_url(with_password, "bench_x") == (
        "postgresql+asyncpg://u:p%40ss@db:6543/bench_x?ssl=disable"
    )


def test_the_command_line_takes_several_urls_and_pids() -> None:
    args = build_parser().parse_args(
        ["--sockets", "10", "--server-url", WS_A, "--server-url", WS_B]
        + ["--server-pid", "11", "--server-pid", "12", "--jwt-secret", "s"]
    )
    options = options_for(args, 10)
    assert options.server_urls == (WS_A, WS_B)
    assert options.server_pids == (11, 12)
    assert options.mode().instances == 2
    own = options_for(
        build_parser().parse_args(
            ["--sockets", "10", "--instances", "2", "--database-url", PG]
            + ["--redis-url", REDIS]
        ),
        10,
    )
    assert (own.instances, own.database_url, own.redis_url) == (2, PG, REDIS)


@pytest.mark.parametrize(
    "argv",
    [
        ["--database-url", PG],
        ["--instances", "2"],
        ["--instances", "2", "--redis-url", REDIS],
        ["--server-url", WS_A, "--instances", "2", "--jwt-secret", "s"],
    ],
)
def test_the_command_refuses_bad_flags_before_starting_anything(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main(["--sockets", "10", *argv]) == EXIT_ERROR
    assert capsys.readouterr().err.startswith("bench: ")


def test_log_problems_are_the_lines_at_warning_or_above() -> None:
    log = (
        "2026-11-23 22:26:52,408 WARNING server.cluster.lock: lock release failed\n"
        "2026-11-23 22:26:53,001 INFO server.app: serving; a WARNING in a message\n"
        "Traceback (most recent call last):\n"
        "2026-11-23 22:26:54,000 ERROR server.candidate: candidate connection failed\n"
    )
    assert log_problems(log) == [
        "2026-11-23 22:26:52,408 WARNING server.cluster.lock: lock release failed",
        "2026-11-23 22:26:54,000 ERROR server.candidate: candidate connection failed",
    ]
    assert log_problems("") == []


def test_log_kinds_count_lines_about_different_sessions_together() -> None:
    message = (
        "WARNING server.grading.service: grading of this attempt not enqueued yet: "
    )
    first = f"2026-11-23 22:26:52,408 {message}TimeoutError() session s1"
    second = f"2026-11-23 22:26:53,111 {message}TimeoutError() session s2"
    assert log_kind(first) == log_kind(second)
    assert log_kind(first).startswith("WARNING server.grading.service: grading of this")
    assert log_kind("short line") == "short line"
