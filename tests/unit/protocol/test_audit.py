"""Audit log entries (protocol/audit.py)."""

from __future__ import annotations

from protocol.audit import AuditEntry, AuditKind


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
