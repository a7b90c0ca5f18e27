"""Who may start, restart or attach to an attempt (PROTOCOL.md section 1, ``start``,
``restart``, ``resume``).

The shell gathers the facts (the interview, is the candidate invited and not revoked,
was the interview archived, what is in progress, how many attempts were used, a fresh
session id, the time) and
:func:`admit_start` / :func:`admit_restart` decide: the new :class:`Attempt` to store,
or the :class:`Refusal` to send. :func:`decide_start` and :func:`decide_restart` are
the refusal rules alone. :func:`decide_attach` says how ``resume`` may take the
attempt's lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol import lease as leases
from protocol.attempt import Attempt, begin
from protocol.definition import InterviewDefinition
from protocol.errors import ErrorCode
from protocol.ids import InterviewId, Millis, SessionId, UserId


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused, as the ``error`` frame will say it;
    ``not_available`` says when the interview opens or closed."""

    code: ErrorCode
    message: str
    opens_at: Millis | None = None
    closes_at: Millis | None = None


def archived(archived_at: Millis) -> Refusal:
    """An archived interview takes no new attempts: it closed when it was archived,
    for good (``not_available`` with ``closes_at``)."""
    message = "this interview is closed: it takes no new attempts"
    return Refusal(ErrorCode.NOT_AVAILABLE, message, closes_at=archived_at)


NOT_FOUND = Refusal(ErrorCode.NOT_FOUND, "no such interview, or you are not invited")
IN_PROGRESS = Refusal(
    ErrorCode.ALREADY_IN_PROGRESS, "you have an attempt in progress: resume it"
)
EXHAUSTED = Refusal(ErrorCode.ATTEMPTS_EXHAUSTED, "no attempts left for this interview")
NO_ACTIVE = Refusal(ErrorCode.NO_ACTIVE_SESSION, "you have no attempt in progress")
LOCKED = Refusal(
    ErrorCode.SESSION_LOCKED,
    "another connection holds this attempt: resume with takeover to move it here",
)


def decide_start(
    *,
    invited: bool,
    active: Attempt | None,
    used: int,
    max_attempts: int,
    archived_at: Millis | None = None,
) -> Refusal | None:
    """May the candidate start a new attempt?

    Args:
        invited: the interview exists and the candidate is invited to it (a revoked
            invitation is none): else ``not_found``, whatever else holds, so that
            nobody learns of interviews they are not invited to.
        active: the candidate's attempt in progress (of any interview), after expiry.
        used: attempts of this interview already made, abandoned ones included.
        max_attempts: the interview's limit.
        archived_at: when the interview was archived, if it was: ``not_available``.
    """
    if not invited:
        return NOT_FOUND
    if archived_at is not None:
        return archived(archived_at)
    if active is not None and active.in_progress:
        return IN_PROGRESS
    if used >= max_attempts:
        return EXHAUSTED
    return None


def decide_restart(
    *,
    active: Attempt | None,
    used: int,
    max_attempts: int,
    invited: bool = True,
    archived_at: Millis | None = None,
) -> Refusal | None:
    """May the candidate abandon ``active`` and start the same interview again?

    Start Over makes a new attempt, so it is refused like ``start`` when the
    invitation was revoked (``not_found``) or the interview archived
    (``not_available``); ``active`` then goes on, attached.
    """
    if active is None or not active.in_progress:
        return NO_ACTIVE
    if not invited:
        return NOT_FOUND
    if archived_at is not None:
        return archived(archived_at)
    if used >= max_attempts:
        return EXHAUSTED
    return None


def admit_start(
    *,
    interview_id: InterviewId,
    definition: InterviewDefinition | None,
    candidate_id: UserId,
    invited: bool,
    active: Attempt | None,
    used: int,
    session_id: SessionId,
    now: Millis,
    archived_at: Millis | None = None,
) -> Attempt | Refusal:
    """Start attempt ``used + 1`` of an interview, or say why not
    (:func:`decide_start`).

    Args:
        definition: the interview, ``None`` when there is no such interview.
        invited: the candidate is invited to it, and the invitation not revoked.
        active: the candidate's attempt in progress (of any interview), after expiry.
        used: attempts of this interview already made, abandoned ones included.
        session_id: the id the new attempt gets.
        now: when it starts.
        archived_at: when the interview was archived, if it was.
    """
    refusal = decide_start(
        invited=definition is not None and invited,
        active=active,
        used=used,
        max_attempts=definition.settings.max_attempts if definition else 0,
        archived_at=archived_at,
    )
    if refusal is not None:
        return refusal
    assert definition is not None  # decide_start refuses an interview not found
    return begin(
        session_id=session_id,
        interview_id=interview_id,
        title=definition.title,
        candidate_id=candidate_id,
        number=used + 1,
        questions=definition.question_views(),
        grace_ms=definition.settings.grace_ms,
        now=now,
    )


def admit_restart(
    *,
    active: Attempt | None,
    definition: InterviewDefinition | None,
    used: int,
    session_id: SessionId,
    now: Millis,
    invited: bool = True,
    archived_at: Millis | None = None,
) -> Attempt | Refusal:
    """Start Over: the attempt that replaces ``active``, or why not
    (:func:`decide_restart`).

    The new attempt has the same questions, title and grace as ``active`` (what the
    candidate was shown), and the next number; ``active`` is abandoned by the shell
    when it stores the new one.

    Args:
        active: the candidate's attempt in progress, after expiry.
        definition: its interview, ``None`` when it no longer exists: then no
            attempt is left.
        used: attempts of that interview already made.
        invited: the candidate's invitation to it stands (not revoked).
        archived_at: when that interview was archived, if it was.
    """
    max_attempts = definition.settings.max_attempts if definition else 0
    refusal = decide_restart(
        active=active,
        used=used,
        max_attempts=max_attempts,
        invited=invited,
        archived_at=archived_at,
    )
    if refusal is not None:
        return refusal
    assert active is not None  # decide_restart refuses without an active attempt
    return begin(
        session_id=session_id,
        interview_id=active.interview_id,
        title=active.title,
        candidate_id=active.candidate_id,
        number=used + 1,
        questions=active.questions,
        grace_ms=active.grace_ms,
        now=now,
    )


class Attach(enum.Enum):
    """How a connection may take an attempt's lock (:func:`decide_attach`)."""

    FREE = "free"
    """Only if no other connection holds it; else ``session_locked``."""
    TAKEOVER = "takeover"
    """From whoever holds it (``resume{takeover:true}``): the holder is superseded."""
    REATTACH = "reattach"
    """From whoever holds it, without asking: the client showed the lease of the
    attempt's last attach, so it is that client back (its old connection vanished,
    or its instance crashed, and may still hold the lock)."""


def decide_attach(
    *,
    takeover: bool,
    lease: str | None,
    key: bytes,
    current: leases.Attachment | None,
) -> Attach:
    """How ``resume{takeover, lease}`` may take the attempt's lock.

    Args:
        takeover: the client asked to take the attempt over.
        lease: the lease the client sent, if any.
        key: the lease key (:func:`protocol.lease.derive_key`).
        current: the attempt's last attach (its owner epoch now) by the asking
            candidate; ``None`` when unknown.

    A lease that does not name ``current`` (someone attached since, another
    candidate's, forged) counts as no lease at all.
    """
    if lease is not None and current is not None and leases.names(key, current, lease):
        return Attach.REATTACH
    return Attach.TAKEOVER if takeover else Attach.FREE
