"""Effects: what the candidate connection asks the shell to do (STYLE.md section 2).

The shell performs them in order and reports each result back through the
connection's ``receive_*`` methods; ``match`` over :data:`Effect` ends in
``assert_never`` so a new effect fails type-checking until the shell handles it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.attempt import Attempt, Change, Draft
from protocol.audit import AuditEntry


@dataclass(frozen=True, slots=True)
class VerifyToken:
    """Check the JWT; answer with receive_authenticated or receive_unauthenticated."""

    token: str


@dataclass(frozen=True, slots=True)
class LoadActiveAttempt:
    """Find the candidate's attempt in progress, if any; answer with receive_active."""

    candidate_id: str


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Start a new attempt; answer with receive_attached or receive_refused."""

    interview_id: str


@dataclass(frozen=True, slots=True)
class AttachAttempt:
    """Attach to the caller's attempt in progress (``resume``); ``lease`` is the one
    the client sent, for :func:`protocol.admission.decide_attach`."""

    takeover: bool
    lease: str | None = None


@dataclass(frozen=True, slots=True)
class RestartAttempt:
    """Start Over; ``current`` is the attached attempt, if any."""

    current: Attempt | None


@dataclass(frozen=True, slots=True)
class Commit:
    """Persist ``change`` under its guard and the connection's fence, atomically."""

    change: Change
    audit: tuple[AuditEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreDraft:
    """Persist the draft of the current question under the guard and the fence."""

    draft: Draft


@dataclass(frozen=True, slots=True)
class RecordAudit:
    """Append to the attempt's audit log; nothing waits for it."""

    entries: tuple[AuditEntry, ...]


Effect = (
    VerifyToken
    | LoadActiveAttempt
    | StartAttempt
    | AttachAttempt
    | RestartAttempt
    | Commit
    | StoreDraft
    | RecordAudit
)
