"""Audit log entries: who did what, when, to an attempt (PRODUCT.md section 4)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.attempt import Answer
from protocol.ids import Millis


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


def expired(answer: Answer) -> AuditEntry:
    """The entry of a question the server expired, with ``answer`` as its answer."""
    data = {"question_index": answer.question_index, "had_draft": answer.had_draft}
    return AuditEntry(
        at=answer.submitted_at, actor="server", kind=AuditKind.EXPIRED, data=data
    )
