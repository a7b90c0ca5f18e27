"""Audit log entries (protocol/audit.py)."""

from __future__ import annotations

import pytest

from protocol import audit
from protocol.attempt import QuestionView, begin
from protocol.audit import AuditEntry, AuditKind
from protocol.ids import InterviewId, SessionId, UserId


def test_an_audit_entry_without_data_has_its_own_empty_data() -> None:
    first = AuditEntry(at=1, actor="server", kind=AuditKind.EXPIRED)
    second = AuditEntry(at=2, actor="server", kind=AuditKind.EXPIRED)

    assert first.data == {}
    assert first.data is not second.data


def test_audit_kinds_are_the_strings_recruiters_see() -> None:
    assert AuditKind.LATE_ANSWER.value == "late_answer"
    assert {kind.value for kind in AuditKind} >= {
        "started",
        "attached",
        "taken_over",
        "answer_accepted",
        "late_answer",
        "expired",
        "abandoned",
        "completed",
    }


def test_an_attach_is_recorded_as_taken_over_only_when_the_lock_was_taken() -> None:
    assert audit.attached("candidate:c-1", 5, taken_over=False) == AuditEntry(
        at=5, actor="candidate:c-1", kind=AuditKind.ATTACHED
    )
    assert audit.attached("candidate:c-1", 5, taken_over=True).kind is (
        AuditKind.TAKEN_OVER
    )


@pytest.mark.parametrize("taken_over", [False, True])
def test_a_lease_reattach_is_recorded_as_an_attach_that_says_so(
    taken_over: bool,
) -> None:
    entry = audit.reattached("candidate:c-1", 5, taken_over=taken_over)

    assert entry == AuditEntry(
        at=5,
        actor="candidate:c-1",
        kind=AuditKind.ATTACHED,
        data={"lease": True, "taken_over": taken_over},
    )


def test_a_detach_keeps_the_close_code() -> None:
    entry = audit.detached("candidate:c-1", 7, 4409)

    assert (entry.kind, entry.at, entry.data) == (
        AuditKind.DETACHED,
        7,
        {"close_code": 4409},
    )


def test_start_and_start_over_name_the_attempt_numbers() -> None:
    view = QuestionView(
        index=0,
        type="short_answer",
        text="q",
        options=None,
        language=None,
        points=1.0,
        difficulty="easy",
        time_limit_s=60,
    )
    second = begin(
        session_id=SessionId("s-2"),
        interview_id=InterviewId("i-1"),
        title="t",
        candidate_id=UserId("c-1"),
        number=2,
        questions=(view,),
        grace_ms=0,
        now=3,
    )
    actor = audit.candidate("c-1")

    assert actor == "candidate:c-1"
    assert audit.started(second, actor, 3) == AuditEntry(
        at=3, actor=actor, kind=AuditKind.STARTED, data={"attempt": 2}
    )
    assert audit.abandoned(second, actor, 3) == AuditEntry(
        at=3, actor=actor, kind=AuditKind.ABANDONED, data={"next": 2}
    )
