"""The bench's pure helpers: tick alignment, expected ticks, percentiles, /proc."""

from __future__ import annotations

import pytest

from bench.stats import (
    count_aligned,
    cpu_percent,
    expected_ticks,
    intended_tick,
    merge_counts,
    parse_stat_cpu,
    parse_status_rss_kb,
    per_socket_kb,
    percentile,
    split_evenly,
    summarize,
)

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
