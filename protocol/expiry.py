"""Expiry of overdue questions as one decision: the attempt after it, the answers it
recorded and the audit entries to store with them (PROTOCOL.md section 1).

The candidate connection (:meth:`protocol.connection.CandidateProtocol.expire`) and
the server's sweeper both expire through :func:`expire`, so they write the same
entries: one ``expired`` per question, then ``completed`` when the last question
expired, at the completion time.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import audit
from protocol.attempt import Answer, Attempt, expire_due
from protocol.audit import AuditEntry
from protocol.ids import Millis


@dataclass(frozen=True, slots=True)
class Expiry:
    """The outcome of :func:`expire`; ``answers`` is empty when nothing was due."""

    attempt: Attempt
    answers: tuple[Answer, ...]
    audit: tuple[AuditEntry, ...]


def expiry_audit(
    before: Attempt, after: Attempt, answers: tuple[Answer, ...], now: Millis
) -> tuple[AuditEntry, ...]:
    """The entries of ``answers`` recorded by expiry, then ``completed`` if the
    expiry finished the attempt (by the server)."""
    entries = [audit.expired(answer) for answer in answers]
    if before.in_progress and not after.in_progress:
        entries.append(audit.completed(after, audit.SERVER, now))
    return tuple(entries)


def expire(attempt: Attempt, now: Millis) -> Expiry:
    """Expire every question of ``attempt`` whose time and grace are over at ``now``.

    Returns:
        The attempt afterwards, the answers the expiry recorded and the audit entries
        to store with them, in order; nothing to store when ``answers`` is empty.
    """
    after, answers = expire_due(attempt, now)
    return Expiry(after, answers, expiry_audit(attempt, after, answers, now))
