"""Audit log entries: who did what, when, to an attempt (PRODUCT.md section 4).

The entries the server writes about a candidate's attempt are built here, so that
the socket shell, the lobby and the sweeper record the same facts the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.attempt import Answer, Attempt
from protocol.ids import Millis

SERVER = "server"
"""The actor of what the server does on its own (expiry, completion by expiry)."""


class AuditKind(enum.StrEnum):
    """What an audit entry records; shown to recruiters."""

    STARTED = "started"
    ATTACHED = "attached"
    DETACHED = "detached"
    TAKEN_OVER = "taken_over"
    ANSWER_ACCEPTED = "answer_accepted"
    LATE_ANSWER = "late_answer"
    EXPIRED = "expired"
    SIGNAL = "signal"
    ABANDONED = "abandoned"
    COMPLETED = "completed"
    SCORE_OVERRIDDEN = "score_overridden"
    REEVALUATED = "reevaluated"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of an attempt's audit log.

    ``actor`` is ``candidate:<id>``, ``recruiter:<id>`` or ``server``; ``data`` holds
    JSON-serialisable details (a late answer keeps its full text: never dropped).
    """

    at: Millis
    actor: str
    kind: AuditKind
    data: Mapping[str, object] = field(default_factory=dict)


def candidate(user_id: str) -> str:
    """The actor of what candidate ``user_id`` does."""
    return f"candidate:{user_id}"


def expired(answer: Answer) -> AuditEntry:
    """The entry of a question the server expired, with ``answer`` as its answer."""
    data = {"question_index": answer.question_index, "had_draft": answer.had_draft}
    return AuditEntry(
        at=answer.submitted_at, actor=SERVER, kind=AuditKind.EXPIRED, data=data
    )


def completed(attempt: Attempt, actor: str, now: Millis) -> AuditEntry:
    """The entry of ``attempt`` finishing: at its completion time, ``now`` when that
    is unknown."""
    at = attempt.completed_at if attempt.completed_at is not None else now
    return AuditEntry(at=at, actor=actor, kind=AuditKind.COMPLETED)


def started(attempt: Attempt, actor: str, now: Millis) -> AuditEntry:
    """The entry of a new attempt, with its number."""
    data = {"attempt": attempt.number}
    return AuditEntry(at=now, actor=actor, kind=AuditKind.STARTED, data=data)


def abandoned(following: Attempt, actor: str, now: Millis) -> AuditEntry:
    """The entry of an attempt abandoned by Start Over for attempt ``following``."""
    data = {"next": following.number}
    return AuditEntry(at=now, actor=actor, kind=AuditKind.ABANDONED, data=data)


def attached(actor: str, now: Millis, *, taken_over: bool) -> AuditEntry:
    """The entry of a connection attaching to an attempt.

    Args:
        taken_over: the attempt's lock was taken from another live connection.
    """
    kind = AuditKind.TAKEN_OVER if taken_over else AuditKind.ATTACHED
    return AuditEntry(at=now, actor=actor, kind=kind)


def reattached(actor: str, now: Millis, *, taken_over: bool) -> AuditEntry:
    """The entry of a client re-attaching with its lease (nobody attached since):
    an attach, with ``"lease": true``.

    Args:
        taken_over: the lock was taken from the client's own old connection (or its
            crashed instance), which had not let go yet.
    """
    data = {"lease": True, "taken_over": taken_over}
    return AuditEntry(at=now, actor=actor, kind=AuditKind.ATTACHED, data=data)


def detached(actor: str, now: Millis, close_code: int | None) -> AuditEntry:
    """The entry of a connection letting go of its attempt, with its close code."""
    data = {"close_code": close_code}
    return AuditEntry(at=now, actor=actor, kind=AuditKind.DETACHED, data=data)
