"""Expiry as one decision: the attempt, the answers and the audit entries.

Tests protocol/expiry.py, used by the candidate connection and the sweeper alike.
"""

from __future__ import annotations

import dataclasses

from protocol.attempt import Draft, Status, expire_due
from protocol.audit import AuditEntry, AuditKind
from protocol.expiry import expire, expiry_audit
from protocol.ids import Millis
from tests.unit.protocol.test_attempt import GRACE, T0, answered, started

CLOSES: Millis = 60_000 + GRACE


def test_nothing_is_due_before_the_question_closes() -> None:
    attempt = started()

    expiry = expire(attempt, T0 + CLOSES)

    assert expiry.attempt == attempt
    assert expiry.answers == ()
    assert expiry.audit == ()


def test_an_expired_question_gets_its_answer_and_an_expired_entry() -> None:
    attempt = dataclasses.replace(
        started(), draft=Draft(question_index=0, text="half", saved_at=T0 + 5)
    )

    expiry = expire(attempt, T0 + CLOSES + 1)

    assert expiry.attempt == expire_due(attempt, T0 + CLOSES + 1)[0]
    assert [answer.text for answer in expiry.answers] == ["half"]
    assert expiry.audit == (
        AuditEntry(
            at=T0 + CLOSES,
            actor="server",
            kind=AuditKind.EXPIRED,
            data={"question_index": 0, "had_draft": True},
        ),
    )


def test_expiring_the_last_question_adds_completed_at_the_completion_time() -> None:
    attempt = answered(started(), "first", T0 + 1_000)
    now = T0 + 1_000 + CLOSES + 50_000  # long after the question closed

    expiry = expire(attempt, now)

    assert expiry.attempt.status is Status.COMPLETED
    assert [entry.kind for entry in expiry.audit] == [
        AuditKind.EXPIRED,
        AuditKind.COMPLETED,
    ]
    completed = expiry.audit[-1]
    assert completed.at == expiry.attempt.completed_at == T0 + 1_000 + CLOSES
    assert completed.at != now
    assert completed.actor == "server"


def test_a_long_absence_expires_every_question_in_turn_then_completes() -> None:
    expiry = expire(started(), T0 + 10 * CLOSES)

    assert [answer.question_index for answer in expiry.answers] == [0, 1]
    assert [entry.kind for entry in expiry.audit] == [
        AuditKind.EXPIRED,
        AuditKind.EXPIRED,
        AuditKind.COMPLETED,
    ]
    assert expiry.audit[-1].at == T0 + 2 * CLOSES


def test_completion_whose_time_is_unknown_is_recorded_at_now() -> None:
    before = started(60)
    after = dataclasses.replace(
        before, status=Status.COMPLETED, question_index=1, completed_at=None
    )

    entries = expiry_audit(before, after, (), T0 + 7)

    assert entries == (AuditEntry(at=T0 + 7, actor="server", kind=AuditKind.COMPLETED),)


def test_an_attempt_that_was_not_in_progress_gets_no_completed_entry() -> None:
    finished = expire(started(60), T0 + CLOSES + 1).attempt

    assert expiry_audit(finished, finished, (), T0 + CLOSES + 2) == ()
    assert expire(finished, T0 + 10 * CLOSES).audit == ()
