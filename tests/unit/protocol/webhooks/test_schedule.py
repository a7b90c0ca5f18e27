from __future__ import annotations

import pytest

from protocol.webhooks.schedule import (
    HOUR,
    MAX_RETRY_AFTER_MS,
    MINUTE,
    RETRY_SCHEDULE_MS,
    SECOND,
    DeliveryStatus,
    Outcome,
    Verdict,
    jittered,
    judge,
    retry_after_ms,
)

NOW = 1_800_000_000_000
MIDDLE = 0.5  # no jitter


def failed(
    tries: int,
    status: int | None = 500,
    retry_after: str | None = None,
    jitter: float = MIDDLE,
) -> Outcome:
    return judge(
        tries=tries,
        status_code=status,
        retry_after=retry_after,
        now=NOW,
        jitter=jitter,
    )


def test_the_schedule_is_the_specifications() -> None:
    assert RETRY_SCHEDULE_MS == (
        0,
        5 * SECOND,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        5 * HOUR,
        10 * HOUR,
        10 * HOUR,
    )


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    outcome = failed(1, status)

    assert outcome == Outcome(Verdict.DELIVERED)
    assert outcome.status is DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    ("tries", "delay"),
    [(1, 5 * SECOND), (2, 5 * MINUTE), (3, 30 * MINUTE), (7, 10 * HOUR)],
)
def test_a_failure_is_retried_after_the_next_delay(tries: int, delay: int) -> None:
    outcome = failed(tries)

    assert outcome == Outcome(Verdict.RETRY, NOW + delay)
    assert outcome.status is DeliveryStatus.PENDING


@pytest.mark.parametrize("status", [None, 301, 302, 400, 404, 429, 500, 503])
def test_redirects_errors_and_no_answer_are_failures(status: int | None) -> None:
    assert failed(1, status).verdict is Verdict.RETRY


def test_the_eighth_failure_is_the_last() -> None:
    outcome = failed(8)

    assert outcome == Outcome(Verdict.EXHAUSTED)
    assert outcome.status is DeliveryStatus.FAILED


def test_410_gone_fails_at_once_and_says_so() -> None:
    outcome = failed(1, 410)

    assert outcome == Outcome(Verdict.GONE)
    assert outcome.status is DeliveryStatus.FAILED


@pytest.mark.parametrize(
    ("jitter", "delay"), [(0.0, 4_500), (0.5, 5_000), (0.999_999, 5_500)]
)
def test_jitter_moves_a_delay_by_up_to_a_tenth(jitter: float, delay: int) -> None:
    assert jittered(5_000, jitter) == delay
    assert failed(1, jitter=jitter).next_attempt_at == NOW + delay


def test_retry_after_postpones_the_next_attempt() -> None:
    assert failed(1, 503, "120").next_attempt_at == NOW + 120 * SECOND


def test_a_retry_after_shorter_than_the_schedule_does_not_hasten_it() -> None:
    assert failed(2, 429, "1").next_attempt_at == NOW + 5 * MINUTE


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("0", 0),
        (" 30 ", 30 * SECOND),
        ("99999999", MAX_RETRY_AFTER_MS),
        ("9" * 5000, MAX_RETRY_AFTER_MS),
        ("Fri, 15 Jan 2027 08:01:00 GMT", 60 * SECOND),
        ("Fri, 15 Jan 2027 08:01:00 -0000", 60 * SECOND),
        ("Fri, 15 Jan 2027 07:00:00 GMT", 0),
        ("Sat, 15 Jan 2039 08:00:00 GMT", MAX_RETRY_AFTER_MS),
        ("soon", None),
        ("-5", None),
        ("", None),
        ("1.5", None),
        ("٣", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str, wait: int | None) -> None:
    assert retry_after_ms(value, NOW) == wait


def test_a_retry_after_that_means_nothing_leaves_the_schedule() -> None:
    assert failed(1, 503, "soon").next_attempt_at == NOW + 5 * SECOND
