"""Interview events: what recruiters watching an interview are told (PROTOCOL.md 2).

An event is news about one attempt of an interview, numbered by a ``cursor`` that
strictly increases per interview. The shell numbers and stores events in the
transaction that makes the change they report, so the log and the attempts never
disagree; this module says which events a change makes, and decides what a monitor
that comes back with a cursor can be given (:func:`recoverable`).

Events are derived, never written by hand at a call site:

* from audit entries (:func:`of_audit`): every attach, detach, takeover, answer,
  expiry, signal, Start Over and completion is audited already;
* from a change of the current question (:func:`question_started`);
* from grading: :func:`answer_evaluated`, :func:`evaluated`.

No answer text, key or draft is ever in an event: a monitor sees what happened,
recruiters read answers through the API.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protocol.attempt import Attempt
from protocol.audit import AuditEntry, AuditKind
from protocol.ids import InterviewId, Millis, SessionId


class EventKind(enum.StrEnum):
    """The ``kind`` of an ``event`` frame: a public contract."""

    STARTED = "started"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    QUESTION_STARTED = "question_started"
    ANSWER_SUBMITTED = "answer_submitted"
    TIME_EXPIRED = "time_expired"
    SIGNAL = "signal"
    TAKEN_OVER = "taken_over"
    ABANDONED = "abandoned"
    COMPLETED = "completed"
    ANSWER_EVALUATED = "answer_evaluated"
    EVALUATED = "evaluated"
    SCORE_OVERRIDDEN = "score_overridden"
    ACCOMMODATION_CHANGED = "accommodation_changed"


@dataclass(frozen=True, slots=True)
class News:
    """An event before the store numbers it."""

    session_id: SessionId
    kind: EventKind
    at: Millis
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored and sent: ``cursor`` strictly increases per interview."""

    interview_id: InterviewId
    cursor: int
    session_id: SessionId
    kind: EventKind
    at: Millis
    data: Mapping[str, object] = field(default_factory=dict)


# -- which events a change makes ---------------------------------------------------


def of_audit(session_id: SessionId, entries: Iterable[AuditEntry]) -> list[News]:
    """The events of audit ``entries`` of one attempt, in order.

    A takeover is ``taken_over`` then ``connected`` (someone is connected again); a
    late answer, a re-evaluation and an override make no event here (an override's
    event comes with its new totals from the store, :func:`score_overridden`).
    """
    news: list[News] = []
    for entry in entries:
        news.extend(_of_entry(session_id, entry))
    return news


def _of_entry(session_id: SessionId, entry: AuditEntry) -> list[News]:
    data = entry.data

    def one(kind: EventKind, fields: Mapping[str, object] | None = None) -> News:
        return News(session_id, kind, entry.at, fields or {})

    match entry.kind:
        case AuditKind.STARTED:
            return [one(EventKind.STARTED, {"attempt": data.get("attempt")})]
        case AuditKind.ATTACHED:
            return [one(EventKind.CONNECTED, {"lease": bool(data.get("lease"))})]
        case AuditKind.TAKEN_OVER:
            return [one(EventKind.TAKEN_OVER), one(EventKind.CONNECTED)]
        case AuditKind.DETACHED:
            return [one(EventKind.DISCONNECTED, {"close_code": data.get("close_code")})]
        case AuditKind.ANSWER_ACCEPTED:
            fields = _pick(data, "question_index", "time_taken_ms")
            return [one(EventKind.ANSWER_SUBMITTED, fields)]
        case AuditKind.EXPIRED:
            fields = _pick(data, "question_index", "had_draft")
            return [one(EventKind.TIME_EXPIRED, fields)]
        case AuditKind.SIGNAL:
            fields = {"kind": data.get("signal"), "detail": data.get("detail")}
            return [one(EventKind.SIGNAL, fields)]
        case AuditKind.ABANDONED:
            return [one(EventKind.ABANDONED, _pick(data, "next"))]
        case AuditKind.COMPLETED:
            return [one(EventKind.COMPLETED)]
        case AuditKind.LATE_ANSWER | AuditKind.REEVALUATED | AuditKind.SCORE_OVERRIDDEN:
            return []
    return []  # pragma: no cover - every kind is matched above


def _pick(data: Mapping[str, object], *keys: str) -> dict[str, object]:
    return {key: data[key] for key in keys if key in data}


def question_started(before: Attempt | None, after: Attempt) -> list[News]:
    """``question_started`` when ``after`` is in progress on another question than
    ``before`` (or is new), with the question's ``deadline``: a monitor counts the
    time left from it, since ticks are not events."""
    moved = before is None or before.question_index != after.question_index
    if not after.in_progress or not moved:
        return []
    data = {
        "question_index": after.question_index,
        "question_count": after.question_count,
        "deadline": after.deadline,
        "time_limit_s": after.current.time_limit_ms // 1000,
    }
    return [
        News(
            after.session_id,
            EventKind.QUESTION_STARTED,
            after.question_started_at,
            data,
        )
    ]


def answer_evaluated(
    session_id: SessionId, at: Millis, data: Mapping[str, object]
) -> News:
    """A grade (or a person's review) stored: ``question_index``, ``status`` and the
    score or the reason."""
    return News(session_id, EventKind.ANSWER_EVALUATED, at, data)


def evaluated(session_id: SessionId, at: Millis, data: Mapping[str, object]) -> News:
    """The final score and the recommendation are ready."""
    return News(session_id, EventKind.EVALUATED, at, data)


def score_overridden(
    session_id: SessionId, at: Millis, data: Mapping[str, object]
) -> News:
    """A recruiter changed a question's score (no note: the API shows it)."""
    return News(session_id, EventKind.SCORE_OVERRIDDEN, at, data)


# -- what a monitor coming back can be given ---------------------------------------


def recoverable(since: int | None, *, pruned: int, head: int) -> bool:
    """Whether every event after ``since`` is still in the log: ``since`` was given,
    is not older than what retention removed (``pruned``: the last cursor deleted,
    0 when none) and not from the future (beyond ``head``, the last cursor)."""
    return since is not None and pruned <= since <= head
