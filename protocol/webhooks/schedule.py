"""What an attempt's answer means for its delivery (Standard Webhooks,
"Deliverability and reliability", "Delivery success and failure").

The schedule: an attempt right away, then after each failure 5 s, 5 min, 30 min,
2 h, 5 h, 10 h and 10 h, each delay jittered by up to ±10 % (so that failures caused
by the load of the retries themselves do not come back in step); after the eighth
failure the delivery has failed for good. ``2xx`` is success; anything else,
redirects included, is a failure, and ``410 Gone`` also disables the endpoint. A
``Retry-After`` (seconds or an HTTP date) postpones the next attempt to no earlier
than it asks, capped at :data:`MAX_RETRY_AFTER_MS`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from protocol.ids import Millis

SECOND, MINUTE, HOUR = 1_000, 60_000, 3_600_000
RETRY_SCHEDULE_MS: tuple[Millis, ...] = (
    0,
    5 * SECOND,
    5 * MINUTE,
    30 * MINUTE,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    10 * HOUR,
)
"""The delay before each attempt, after the failure of the one before (the first:
when the event happened)."""
JITTER = 0.1
"""Each delay is moved by up to this share, either way."""
MAX_RETRY_AFTER_MS = 24 * HOUR
"""A ``Retry-After`` asking for longer is held to this."""


class DeliveryStatus(enum.StrEnum):
    """A delivery's state: ``pending`` (an attempt is due or scheduled) ->
    ``delivered`` | ``failed``; a manual redelivery makes it ``pending`` again."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    """The last attempt of the schedule failed."""
    GONE = "gone"
    """``410 Gone``: the delivery failed and the endpoint is disabled."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision after an attempt; ``next_attempt_at`` is set for ``RETRY``."""

    verdict: Verdict
    next_attempt_at: Millis | None = None

    @property
    def status(self) -> DeliveryStatus:
        match self.verdict:
            case Verdict.DELIVERED:
                return DeliveryStatus.DELIVERED
            case Verdict.RETRY:
                return DeliveryStatus.PENDING
            case _:
                return DeliveryStatus.FAILED


def judge(
    *,
    tries: int,
    status_code: int | None,
    retry_after: str | None,
    now: Millis,
    jitter: float,
    schedule: Sequence[Millis] = RETRY_SCHEDULE_MS,
) -> Outcome:
    """Decide after attempt number ``tries`` (1 for the first of this run).

    Args:
        status_code: the response's, or ``None`` when no response came (refused
            address, connection error, timeout).
        retry_after: the response's ``Retry-After`` header, if any.
        jitter: a random number in [0, 1) from the shell.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(Verdict.DELIVERED)
    if status_code == 410:
        return Outcome(Verdict.GONE)
    if tries >= len(schedule):
        return Outcome(Verdict.EXHAUSTED)
    delay = jittered(schedule[tries], jitter)
    asked = retry_after_ms(retry_after, now) if retry_after is not None else None
    if asked is not None:
        delay = max(delay, asked)
    return Outcome(Verdict.RETRY, now + delay)


def jittered(delay: Millis, jitter: float) -> Millis:
    """``delay`` moved by up to :data:`JITTER` of it: ``jitter`` 0 is the earliest,
    0.5 the delay itself, towards 1 the latest."""
    return delay + round(delay * JITTER * (2 * jitter - 1))


def retry_after_ms(value: str, now: Millis) -> Millis | None:
    """How long a ``Retry-After`` asks to wait, from ``now``: whole seconds or an
    HTTP date; ``None`` when it is neither. A date in the past asks for nothing."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        # int() refuses more than 4,300 digits; anything that long is past the cap.
        seconds = int(text) if len(text) <= 12 else MAX_RETRY_AFTER_MS
        return min(seconds * SECOND, MAX_RETRY_AFTER_MS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000", RFC 5322 section 3.3: UTC all the same
        moment = moment.replace(tzinfo=dt.UTC)
    wait = round(moment.timestamp() * 1000) - now
    return min(max(wait, 0), MAX_RETRY_AFTER_MS)
