from __future__ import annotations

from bench.webhooks import Figures, figures, format_figures, rate


def test_a_rate_counts_the_intervals_between_first_and_last() -> None:
    assert rate(11, 0.0, 2.0) == 5.0
    assert rate(1, 0.0, 2.0) is None
    assert rate(5, None, None) is None
    assert rate(5, 2.0, 2.0) is None


def test_figures_split_at_the_kill_and_count_losses_and_duplicates() -> None:
    report = figures(
        6,
        [0.0, 1.0, 2.0, 10.0, 11.0],
        arrivals=8,
        bad_signatures=0,
        killed_at=5.0,
    )

    assert report == Figures(
        events=6,
        received=5,
        lost=1,
        duplicates=3,
        bad_signatures=0,
        before_kill_per_s=1.0,
        after_kill_per_s=1.0,
        recovery_s=5.0,
        overall_per_s=0.4,
    )


def test_without_a_kill_everything_is_before_it() -> None:
    report = figures(3, [0.0, 0.5, 1.0], arrivals=3, bad_signatures=0, killed_at=None)

    assert (report.lost, report.duplicates, report.recovery_s) == (0, 0, None)
    assert report.before_kill_per_s == report.overall_per_s == 2.0
    assert report.after_kill_per_s is None
    assert "LOST 0" in format_figures(report, {"events": 3})
