"""Token buckets for per-connection frame limits (PROTOCOL.md section 3)."""

from __future__ import annotations

from protocol.ids import Millis


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full.

    Call :meth:`take` once per frame with the server time; it never reads a clock.
    """

    __slots__ = ("rate_per_ms", "burst", "tokens", "updated_at")

    def __init__(self, *, rate_per_s: float, burst: int, now: Millis) -> None:
        self.rate_per_ms = rate_per_s / 1000
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated_at = now

    def take(self, now: Millis) -> bool:
        """Spend one token if there is one; ``False``: the frame is over the limit."""
        elapsed = max(0, now - self.updated_at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_ms)
        # A wall clock that steps back must not earn the same time twice.
        self.updated_at = max(self.updated_at, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FloodDetector:
    """Tells when a client has kept exceeding its limit for ``close_after_ms``.

    A spell of dropped frames ends once ``quiet_ms`` pass without a drop.
    """

    __slots__ = ("close_after_ms", "quiet_ms", "spell_started_at", "last_drop_at")

    def __init__(self, *, close_after_ms: Millis, quiet_ms: Millis = 1000) -> None:
        self.close_after_ms = close_after_ms
        self.quiet_ms = quiet_ms
        self.spell_started_at: Millis | None = None
        self.last_drop_at: Millis = 0

    def record_drop(self, now: Millis) -> bool:
        """Note a dropped frame; ``True`` once the spell has lasted long enough."""
        if self.spell_started_at is None or now - self.last_drop_at > self.quiet_ms:
            self.spell_started_at = now
        self.last_drop_at = now
        return now - self.spell_started_at >= self.close_after_ms


class SignalLimiter:
    """Which integrity signals get an audit entry each, and which are only counted.

    A signal identical (same kind and detail) to the one received just before it
    is counted, as is one beyond a token bucket of ``burst`` signals refilling at
    ``rate_per_s``. Counting never blocks the candidate and is never an error: the
    counts, by kind, go with the next stored signal (:meth:`take_unrecorded`).
    """

    __slots__ = ("bucket", "last", "unrecorded")

    def __init__(self, *, burst: int, rate_per_s: float, now: Millis) -> None:
        self.bucket = TokenBucket(rate_per_s=rate_per_s, burst=burst, now=now)
        self.last: tuple[str, str | None] | None = None
        self.unrecorded: dict[str, int] = {}

    def admit(self, kind: str, detail: str | None, now: Millis) -> bool:
        """Whether this signal gets an entry; ``False``: it was counted instead."""
        repeated = self.last == (kind, detail)
        self.last = (kind, detail)
        if repeated or not self.bucket.take(now):
            self.unrecorded[kind] = self.unrecorded.get(kind, 0) + 1
            return False
        return True

    def take_unrecorded(self) -> dict[str, int]:
        """The signals counted since the last call, by kind; resets the counts."""
        unrecorded, self.unrecorded = self.unrecorded, {}
        return unrecorded
