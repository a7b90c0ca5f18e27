"""Per-connection frame limits (protocol/ratelimit.py); time is a plain number."""

from __future__ import annotations

from hypothesis import given, strategies as st

from protocol.ratelimit import FloodDetector, SignalLimiter, TokenBucket

T0 = 1_700_000_000_000


def takes(bucket: TokenBucket, count: int, now: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


# -- TokenBucket -----------------------------------------------------------------------


def test_a_bucket_starts_full_and_lets_a_whole_burst_through() -> None:
    bucket = TokenBucket(rate_per_s=20, burst=50, now=T0)

    assert takes(bucket, 50, T0) == [True] * 50
    assert bucket.take(T0) is False


def test_a_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=20, burst=50, now=T0)
    takes(bucket, 50, T0)

    assert bucket.take(T0 + 49) is False  # 0.98 of a token
    assert bucket.take(T0 + 50) is True  # 1.0 token
    assert bucket.take(T0 + 50) is False


def test_a_refused_take_keeps_the_fraction_earned_so_far() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1, now=T0)
    bucket.take(T0)

    assert bucket.take(T0 + 600) is False
    assert bucket.take(T0 + 1_000) is True


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=20, burst=50, now=T0)

    assert takes(bucket, 51, T0 + 3_600_000) == [True] * 50 + [False]
    assert bucket.tokens == 0


def test_a_clock_that_steps_back_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1, now=T0)
    assert bucket.take(T0 + 10_000) is True

    assert bucket.take(T0 + 5_000) is False  # the wall clock stepped back 5 s
    assert bucket.take(T0 + 10_000) is False  # ...and came back: no time passed


@given(
    rate=st.integers(1, 100),
    burst=st.integers(1, 100),
    steps=st.lists(st.integers(0, 5_000), max_size=50),
)
def test_a_bucket_grants_no_more_than_burst_plus_rate_times_elapsed(
    rate: int, burst: int, steps: list[int]
) -> None:
    bucket = TokenBucket(rate_per_s=rate, burst=burst, now=T0)
    now = T0
    granted = 0
    for step in steps:
        now += step
        granted += sum(takes(bucket, 3, now))
        assert 0 <= bucket.tokens <= burst

    assert granted <= burst + rate * (now - T0) / 1000


# -- FloodDetector ---------------------------------------------------------------------


def test_one_drop_is_not_a_flood() -> None:
    assert FloodDetector(close_after_ms=5_000).record_drop(T0) is False


def test_drops_closer_than_the_quiet_time_for_5_s_are_a_flood() -> None:
    detector = FloodDetector(close_after_ms=5_000, quiet_ms=1_000)

    results = [detector.record_drop(T0 + ms) for ms in range(0, 5_000, 1_000)]

    assert results == [False] * 5
    assert detector.record_drop(T0 + 5_000) is True
    assert detector.record_drop(T0 + 5_001) is True


def test_a_pause_longer_than_the_quiet_time_ends_the_spell() -> None:
    detector = FloodDetector(close_after_ms=5_000, quiet_ms=1_000)
    for ms in range(0, 4_500, 100):
        detector.record_drop(T0 + ms)

    assert detector.record_drop(T0 + 4_400 + 1_001) is False  # a new spell
    assert detector.spell_started_at == T0 + 5_401
    for ms in range(5_401, 5_401 + 5_000, 100):
        assert detector.record_drop(T0 + ms) is False
    assert detector.record_drop(T0 + 5_401 + 5_000) is True


def test_a_pause_of_exactly_the_quiet_time_continues_the_spell() -> None:
    detector = FloodDetector(close_after_ms=2_000, quiet_ms=1_000)
    detector.record_drop(T0)
    detector.record_drop(T0 + 1_000)

    assert detector.record_drop(T0 + 2_000) is True


# -- SignalLimiter ---------------------------------------------------------------------


def signals(limiter: SignalLimiter, kinds: list[str], now: int) -> list[bool]:
    return [limiter.admit(kind, None, now) for kind in kinds]


def test_a_burst_of_different_signals_is_stored_then_one_every_five_seconds() -> None:
    limiter = SignalLimiter(burst=20, rate_per_s=0.2, now=T0)
    alternating = ["focus_lost", "focus_returned"] * 15

    assert signals(limiter, alternating, T0) == [True] * 20 + [False] * 10
    assert limiter.admit("copy", None, T0 + 4_999) is False
    assert limiter.admit("paste", None, T0 + 5_000 + 4_999) is True


def test_identical_consecutive_signals_are_counted_not_stored() -> None:
    limiter = SignalLimiter(burst=20, rate_per_s=0.2, now=T0)

    assert [limiter.admit("paste", "12 chars", T0) for _ in range(3)] == [
        True,
        False,
        False,
    ]
    assert limiter.admit("paste", "40 chars", T0) is True
    assert limiter.take_unrecorded() == {"paste": 2}


def test_counted_signals_are_reported_once_by_kind() -> None:
    limiter = SignalLimiter(burst=1, rate_per_s=0.2, now=T0)
    signals(limiter, ["copy", "paste", "copy", "paste", "paste"], T0)

    assert limiter.take_unrecorded() == {"paste": 3, "copy": 1}
    assert limiter.take_unrecorded() == {}


def test_a_thousand_signals_store_a_bounded_number_of_entries() -> None:
    limiter = SignalLimiter(burst=20, rate_per_s=0.2, now=T0)
    kinds = ["focus_lost", "focus_returned"]

    # 1,000 alternating signals, one every 50 ms: the last at 49.95 s.
    stored = sum(
        limiter.admit(kinds[index % 2], None, T0 + index * 50) for index in range(1_000)
    )

    assert stored == 20 + 9  # the burst, then one per 5 s
    assert sum(limiter.take_unrecorded().values()) == 1_000 - stored
