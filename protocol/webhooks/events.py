"""Webhook event types and the body of a message (Standard Webhooks, "Payload").

Every body is ``{"type", "timestamp", "data"}``: ``type`` is an :class:`EventType`,
``timestamp`` the moment the event happened (ISO 8601, UTC, milliseconds), and
``data`` a thin description of the attempt (ids, and what changed). The body is
serialised once, when the event is stored, so that every attempt sends and signs the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping

from protocol.ids import Millis

MESSAGE_PREFIX = "msg_"
"""Message ids (``webhook-id``) start with it; they never contain a ``.``, which
delimits the signed content."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class EventType(enum.StrEnum):
    """What an endpoint may subscribe to."""

    SESSION_COMPLETED = "session.completed"
    """An attempt finished: every question answered or expired (data: the attempt,
    ``completed_at``)."""
    SESSION_EVALUATED = "session.evaluated"
    """An attempt's summary was written (data: totals and ``recommendation``)."""
    SCORE_OVERRIDDEN = "score.overridden"
    """A recruiter set a question's score (data: ``question_index``, ``score``,
    ``previous``, ``overridden_by``)."""


def message_id(token: str) -> str:
    """The ``webhook-id`` of a new message from a random ``token`` (hex).

    Raises:
        ValueError: ``token`` is empty or not lowercase hex.
    """
    if not token or token.strip("0123456789abcdef"):
        raise ValueError(f"expected a lowercase hex token, got {token[:40]!r}")
    return MESSAGE_PREFIX + token


def timestamp(at: Millis) -> str:
    """``at`` as ISO 8601 in UTC with milliseconds (``2027-01-15T08:00:00.250Z``)."""
    moment = _EPOCH + dt.timedelta(milliseconds=at)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % 1000:03d}Z"


def event_body(event_type: EventType, at: Millis, data: Mapping[str, object]) -> str:
    """The message body as sent and signed: compact JSON, ASCII only (non-ASCII text
    escaped), so that its bytes are the same whichever way a receiver reads them."""
    body = {"type": event_type.value, "timestamp": timestamp(at), "data": dict(data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)
