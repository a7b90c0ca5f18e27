"""Per-question statistics of an interview, as Moodle's quiz statistics define them.

Pure: the shell reads the graded attempts' scores and passes them in. With ``S``
attempts, ``x_i(s)`` the score of attempt ``s`` on question ``i`` (out of ``m_i``
points) and ``X(s)`` its total (Moodle, "Quiz statistics calculations"):

* facility index ``F_i = 100 · mean(x_i) / m_i``: the share of the points that
  candidates earned (a hard question is low);
* standard deviation ``SD_i = 100 · sqrt(V(x_i)) / m_i``, with the sample variance
  ``V(x) = Σ (x(s) − mean(x))² / (S − 1)``: how much the scores spread, in percent of
  the question's points;
* discrimination index ``D_i = 100 · r(x_i, X_−i)``: the correlation between the
  question's score and the rest of the test, ``X_−i(s) = X(s) − x_i(s)``, so that
  a question does not correlate with itself (candidates who do well elsewhere do
  well here: high; negative: the question misleads good candidates).

Undefined values are ``None``: every figure for no attempts, the deviation and the
discrimination for fewer than two, the discrimination when either side does not vary
(every candidate earned the same on the question, or on the rest).

Which attempts count is :class:`Sample`: each candidate's first graded attempt (the
default: a second try at the same questions is easier, so repeats would inflate the
facility and blur the discrimination), or every graded attempt.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

HISTOGRAM_BUCKETS = 10
"""The score distribution's buckets: 0–10 %, 10–20 %, … 90–100 % (100 % in the last)."""


class Sample(enum.StrEnum):
    """Which graded attempts the statistics are computed over."""

    FIRST = "first"
    """Each candidate's first graded attempt."""
    ALL = "all"
    """Every graded attempt."""


@dataclass(frozen=True, slots=True)
class AttemptScores:
    """One graded attempt: its candidate, its number and each question's score."""

    candidate_id: str
    number: int
    scores: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class QuestionStatistics:
    """One question's figures; percentages are of the question's points."""

    index: int
    points: float
    count: int
    mean_score: float | None
    facility: float | None
    standard_deviation: float | None
    discrimination: float | None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Attempts whose total percentage is from ``start`` (inclusive) to ``end``
    (exclusive, but for the last bucket, which holds 100 %)."""

    start: float
    end: float
    count: int


@dataclass(frozen=True, slots=True)
class InterviewStatistics:
    """The test's totals (points), their distribution and each question's figures."""

    sample: Sample
    count: int
    max_score: float
    mean_score: float | None
    median_score: float | None
    standard_deviation: float | None
    mean_percentage: float | None
    histogram: tuple[Bucket, ...]
    questions: tuple[QuestionStatistics, ...]


def sampled(attempts: Sequence[AttemptScores], sample: Sample) -> list[AttemptScores]:
    """The attempts that ``sample`` counts, in the order given."""
    if sample is Sample.ALL:
        return list(attempts)
    first: dict[str, AttemptScores] = {}
    for attempt in attempts:
        kept = first.get(attempt.candidate_id)
        if kept is None or attempt.number < kept.number:
            first[attempt.candidate_id] = attempt
    chosen = {id(attempt) for attempt in first.values()}
    return [attempt for attempt in attempts if id(attempt) in chosen]


def interview_statistics(
    points: Sequence[float],
    attempts: Sequence[AttemptScores],
    *,
    sample: Sample = Sample.FIRST,
) -> InterviewStatistics:
    """The statistics of the ``sample`` of ``attempts``.

    Args:
        points: each question's points (its maximum score), in order.
        attempts: graded attempts; each has one score per question.
        sample: which of them count.

    Raises:
        ValueError: an attempt has not one score per question.
    """
    counted = sampled(attempts, sample)
    for attempt in counted:
        if len(attempt.scores) != len(points):
            message = f"expected {len(points)} scores, got {len(attempt.scores)}"
            raise ValueError(message)
    totals = [math.fsum(attempt.scores) for attempt in counted]
    maximum = math.fsum(points)
    return InterviewStatistics(
        sample=sample,
        count=len(counted),
        max_score=maximum,
        mean_score=_mean(totals),
        median_score=_median(totals),
        standard_deviation=_deviation(totals),
        mean_percentage=_percent(_mean(totals), maximum),
        histogram=histogram([_share(total, maximum) for total in totals]),
        questions=tuple(
            _question(index, points[index], counted, totals)
            for index in range(len(points))
        ),
    )


def histogram(
    percentages: Sequence[float], buckets: int = HISTOGRAM_BUCKETS
) -> tuple[Bucket, ...]:
    """How many of ``percentages`` (0–100) fall in each of ``buckets`` equal ranges."""
    width = 100 / buckets
    counts = [0] * buckets
    for percentage in percentages:
        counts[min(int(percentage // width), buckets - 1)] += 1
    return tuple(
        Bucket(start=n * width, end=(n + 1) * width, count=count)
        for n, count in enumerate(counts)
    )


def _question(
    index: int, points: float, attempts: Sequence[AttemptScores], totals: list[float]
) -> QuestionStatistics:
    scores = [attempt.scores[index] for attempt in attempts]
    rest = [total - score for total, score in zip(totals, scores, strict=True)]
    deviation = _deviation(scores)
    return QuestionStatistics(
        index=index,
        points=points,
        count=len(scores),
        mean_score=_mean(scores),
        facility=_percent(_mean(scores), points),
        standard_deviation=_percent(deviation, points),
        discrimination=_times_100(_correlation(scores, rest)),
    )


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _covariance(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The sample covariance (divided by S − 1, as Moodle does)."""
    if len(xs) < 2:
        return None
    mean_x, mean_y = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    products = ((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return math.fsum(products) / (len(xs) - 1)


def _deviation(values: Sequence[float]) -> float | None:
    variance = _covariance(values, values)
    return None if variance is None else math.sqrt(max(variance, 0.0))


def _correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    covariance = _covariance(xs, ys)
    spread_x, spread_y = _deviation(xs), _deviation(ys)
    if covariance is None or not spread_x or not spread_y:
        return None
    # Rounding may take |r| a hair past 1 when the two sides are proportional.
    return max(-1.0, min(1.0, covariance / (spread_x * spread_y)))


def _percent(value: float | None, whole: float) -> float | None:
    if value is None or whole <= 0:
        return None
    return 100 * value / whole


def _share(value: float, whole: float) -> float:
    return 100 * value / whole if whole > 0 else 0.0


def _times_100(value: float | None) -> float | None:
    return None if value is None else 100 * value
