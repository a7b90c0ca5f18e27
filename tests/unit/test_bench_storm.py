"""The pure helpers of ``python -m bench.storm`` (bench/storm_stats.py)."""

from __future__ import annotations

import pytest

from bench.storm_stats import (
    GRACEFUL,
    KILL,
    Backoff,
    Timeline,
    reconnect_target,
    storm_figures,
    storm_problems,
)

TIMELINE = Timeline(signalled_at=1_000.0, exited_at=2_000.0, accepting_at=3_000.0)


def test_backoff_ceilings_double_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base_ms=500, cap_ms=3_000)
    assert [backoff.ceiling_ms(k) for k in range(5)] == [500, 1000, 2000, 3000, 3000]


def test_backoff_delays_are_a_uniform_share_of_the_ceiling() -> None:
    backoff = Backoff(base_ms=500, cap_ms=10_000)
    assert backoff.delay_ms(0, 0.0) == 0
    assert backoff.delay_ms(1, 0.5) == 500
    assert backoff.delay_ms(100, 0.25) == 2_500


def test_backoff_refuses_negative_values() -> None:
    with pytest.raises(ValueError):
        Backoff(base_ms=-1, cap_ms=10)
    with pytest.raises(ValueError):
        Backoff(base_ms=1, cap_ms=10).delay_ms(-1, 0.5)
    with pytest.raises(ValueError):
        Backoff(base_ms=1, cap_ms=10).delay_ms(0, 1.5)


def test_one_instance_brings_every_socket_back_to_itself() -> None:
    assert [reconnect_target(i, 0, 1, 0) for i in range(4)] == [0, 0, 0, 0]


def test_half_of_the_restarted_instances_sockets_go_to_the_other_one() -> None:
    assert [reconnect_target(i, 0, 2, 0) for i in range(4)] == [1, 0, 1, 0]


def test_sockets_of_another_instance_stay_where_they_are() -> None:
    assert [reconnect_target(i, 1, 2, 0) for i in range(4)] == [1, 1, 1, 1]


def test_figures_time_the_last_resume_from_the_new_process_accepting() -> None:
    figures = storm_figures(
        kind=GRACEFUL,
        timeline=TIMELINE,
        resumes=[(1_100.0, 3_500.0, 2), (1_200.0, 7_000.0, 4)],
        close_codes=[{"1012": 1}, {"1012": 1}],
        refusals=[{"ECONNREFUSED": 3}, {"ECONNREFUSED": 1, "http 503": 2}],
        displaced=2,
        not_back=0,
    )
    assert figures["shutdown_s"] == 1.0
    assert figures["start_s"] == 1.0
    assert figures["all_attached_after_accepting_s"] == 4.0
    assert figures["all_attached_after_signal_s"] == 6.0
    assert figures["resume_ms"] == {"count": 2, "p50": 2400, "p99": 5800, "max": 5800}
    assert figures["resume_after_accepting_ms"]["max"] == 4000
    assert figures["attempts"]["max"] == 4
    assert figures["close_codes"] == {"1012": 2}
    assert figures["refusals"] == {"ECONNREFUSED": 4, "http 503": 2}
    assert storm_problems(figures) == ["resume p99 5.8 s (target 5 s)"]


def test_a_socket_not_back_leaves_the_time_to_all_back_unknown() -> None:
    figures = storm_figures(
        kind=KILL,
        timeline=TIMELINE,
        resumes=[(1_100.0, 3_500.0, 1)],
        close_codes=[{"1006": 2}],
        refusals=[],
        displaced=2,
        not_back=1,
    )
    assert figures["all_attached_after_accepting_s"] is None
    assert storm_problems(figures) == [
        "1 sockets never attached again",
        "1 of 2 displaced sockets resumed",
    ]


def test_a_graceful_restart_must_close_every_socket_with_1012() -> None:
    figures = storm_figures(
        kind=GRACEFUL,
        timeline=TIMELINE,
        resumes=[(1_100.0, 3_100.0, 1), (1_100.0, 3_100.0, 1)],
        close_codes=[{"1012": 1, "1011": 1}],
        refusals=[],
        displaced=2,
        not_back=0,
    )
    assert storm_problems(figures) == [
        "graceful restart closed sockets with {'1011': 1}, not 1012"
    ]
    figures["kind"] = KILL
    assert storm_problems(figures) == []
