"""Moodle's quiz statistics (evaluators/statistics.py) against numbers worked by hand.

The worked example: two questions of 2 and 4 points, four attempts scoring
(2, 4), (2, 2), (0, 2) and (0, 0). Question 0: mean 1, so facility 50 %; variance
(1 + 1 + 1 + 1) / 3 = 4/3, SD = 100 · sqrt(4/3) / 2 = 57.735 %; the rest of the test
is question 1, (4, 2, 2, 0), variance 8/3 and covariance (2 + 0 + 0 + 2) / 3 = 4/3,
so r = (4/3) / sqrt(4/3 · 8/3) = 1/sqrt(2): D = 70.711. Question 1: mean 2 of 4,
facility 50 %, SD = 100 · sqrt(8/3) / 4 = 40.825 %, D = 70.711 likewise. Totals
6, 4, 2, 0: mean 3, median 3, SD sqrt(20/3) = 2.582, 50 % on average.
"""

from __future__ import annotations

import math

import pytest

from evaluators.statistics import (
    AttemptScores,
    Bucket,
    Sample,
    histogram,
    interview_statistics,
    sampled,
)

POINTS = (2.0, 4.0)
WORKED = [
    AttemptScores("ada", 1, (2.0, 4.0)),
    AttemptScores("bob", 1, (2.0, 2.0)),
    AttemptScores("cy", 1, (0.0, 2.0)),
    AttemptScores("di", 1, (0.0, 0.0)),
]


def test_the_worked_example_gives_moodles_facility_deviation_and_discrimination() -> (
    None
):
    stats = interview_statistics(POINTS, WORKED)

    first, second = stats.questions
    assert (first.count, first.mean_score, first.facility) == (4, 1.0, 50.0)
    assert first.standard_deviation == pytest.approx(57.735, abs=1e-3)
    assert first.discrimination == pytest.approx(100 / math.sqrt(2))
    assert (second.mean_score, second.facility) == (2.0, 50.0)
    assert second.standard_deviation == pytest.approx(40.825, abs=1e-3)
    assert second.discrimination == pytest.approx(70.711, abs=1e-3)


def test_the_worked_example_gives_the_totals_and_their_distribution() -> None:
    stats = interview_statistics(POINTS, WORKED)

    assert (stats.count, stats.max_score) == (4, 6.0)
    assert (stats.mean_score, stats.median_score) == (3.0, 3.0)
    assert stats.standard_deviation == pytest.approx(math.sqrt(20 / 3))
    assert stats.mean_percentage == 50.0
    counts = [bucket.count for bucket in stats.histogram]
    assert counts == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]  # 0 %, 33 %, 67 %, 100 %


def test_a_question_the_strong_candidates_miss_discriminates_negatively() -> None:
    # Question 1 goes to the weak: its score falls as the rest of the test rises.
    attempts = [
        AttemptScores("a", 1, (5.0, 0.0)),
        AttemptScores("b", 1, (3.0, 1.0)),
        AttemptScores("c", 1, (1.0, 2.0)),
    ]

    stats = interview_statistics((5.0, 2.0), attempts)

    assert stats.questions[1].discrimination == pytest.approx(-100.0)
    assert stats.questions[1].facility == pytest.approx(50.0)


def test_a_question_everyone_scored_alike_has_no_discrimination() -> None:
    attempts = [
        AttemptScores("a", 1, (1.0, 3.0)),
        AttemptScores("b", 1, (1.0, 0.0)),
    ]

    question = interview_statistics((1.0, 3.0), attempts).questions[0]

    assert (question.facility, question.standard_deviation) == (100.0, 0.0)
    assert question.discrimination is None


def test_one_attempt_has_a_facility_but_no_spread_or_discrimination() -> None:
    stats = interview_statistics(POINTS, WORKED[:1])

    question = stats.questions[1]
    assert (question.facility, question.standard_deviation) == (100.0, None)
    assert question.discrimination is None
    assert stats.standard_deviation is None
    assert stats.median_score == 6.0


def test_no_attempts_have_no_figures_but_a_histogram_of_zeros() -> None:
    stats = interview_statistics(POINTS, [])

    assert stats.count == 0
    assert (stats.mean_score, stats.median_score, stats.mean_percentage) == (
        None,
        None,
        None,
    )
    assert [question.facility for question in stats.questions] == [None, None]
    assert sum(bucket.count for bucket in stats.histogram) == 0


def test_the_first_attempt_of_each_candidate_is_the_default_sample() -> None:
    retry = AttemptScores("ada", 2, (2.0, 4.0))
    attempts = [retry, AttemptScores("ada", 1, (0.0, 0.0)), WORKED[1]]

    first = interview_statistics(POINTS, attempts)
    every = interview_statistics(POINTS, attempts, sample=Sample.ALL)

    assert (first.sample, first.count) == (Sample.FIRST, 2)
    assert first.questions[0].mean_score == 1.0  # ada's 0 and bob's 2
    assert every.count == 3
    assert sampled(attempts, Sample.FIRST) == attempts[1:]


def test_an_attempt_without_a_score_per_question_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 2 scores, got 1"):
        interview_statistics(POINTS, [AttemptScores("a", 1, (1.0,))])


def test_the_histogram_puts_100_percent_in_the_last_bucket() -> None:
    buckets = histogram([0.0, 9.99, 10.0, 99.9, 100.0], buckets=4)

    assert buckets == (
        Bucket(0.0, 25.0, 3),
        Bucket(25.0, 50.0, 0),
        Bucket(50.0, 75.0, 0),
        Bucket(75.0, 100.0, 2),
    )


def test_an_interview_worth_no_points_has_no_percentages() -> None:
    stats = interview_statistics((0.0,), [AttemptScores("a", 1, (0.0,))])

    assert stats.questions[0].facility is None
    assert stats.mean_percentage is None
    assert stats.histogram[0].count == 1


def test_a_later_attempt_after_the_first_is_left_out_of_the_first_sample() -> None:
    first, later = AttemptScores("ada", 1, (1.0, 1.0)), AttemptScores("ada", 3, (0, 0))

    assert sampled([first, later], Sample.FIRST) == [first]
