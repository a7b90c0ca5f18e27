"""Audit log entries: who did what, when, to an attempt (PRODUCT.md section 4).

The entries the server writes about a candidate's attempt are built here, so that
the socket shell, the lobby and the sweeper record the same facts the same way.

A late answer's text is kept, never silently dropped (PROTOCOL.md section 1), within
a budget per question (:func:`late_answer_kept`): the first late answers are kept
whole while they fit, the first one that does not fit is recorded by its size and
digest, and any later one is only counted in the question's tally. The store
applies the rule with the tally it holds, in the transaction that writes the entry,
so the bound holds across reconnects and instances.
"""

from __future__ import annotations

import enum
import hashlib
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


def detached(
    actor: str,
    now: Millis,
    close_code: int | None,
    unrecorded_signals: Mapping[str, int] | None = None,
) -> AuditEntry:
    """The entry of a connection letting go of its attempt, with its close code.

    Args:
        unrecorded_signals: signals of the connection counted but not stored one
            entry each since its last stored signal, by kind (omitted when none).
    """
    data: dict[str, object] = {"close_code": close_code}
    if unrecorded_signals:
        data["unrecorded_signals"] = dict(unrecorded_signals)
    return AuditEntry(at=now, actor=actor, kind=AuditKind.DETACHED, data=data)


def late_answer(actor: str, now: Millis, question_index: int, text: str) -> AuditEntry:
    """The entry of an answer that came too late, with its whole text; the store
    bounds what it keeps of it (:func:`late_answer_kept`)."""
    data = {"question_index": question_index, "text": text}
    return AuditEntry(at=now, actor=actor, kind=AuditKind.LATE_ANSWER, data=data)


@dataclass(frozen=True, slots=True)
class LateAnswerBudget:
    """What the audit log keeps whole of one question's late answers: at most
    ``texts`` texts of ``chars`` characters in all (twice the longest answer by
    default, so that at least two late answers of any length are kept)."""

    texts: int = 10
    chars: int = 200_000


@dataclass(frozen=True, slots=True)
class LateAnswerTally:
    """One question's late answers already stored: how many came, how many of them
    were kept whole and their characters."""

    received: int = 0
    kept: int = 0
    kept_chars: int = 0


def text_digest(text: str) -> str:
    """The SHA-256 of ``text`` in UTF-8 (lone surrogates included), in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def late_answer_kept(
    entry: AuditEntry, tally: LateAnswerTally, budget: LateAnswerBudget
) -> AuditEntry | None:
    """What the audit log stores of late answer ``entry`` (:func:`late_answer`),
    given the ``tally`` of its question before it.

    Returns:
        ``entry`` itself while every late answer so far was kept and its text fits
        the ``budget``; for the first one that does not fit, an entry without the
        text that gives its number, length and SHA-256 digest and says that the
        text was not kept (``text_kept: false``); ``None`` for any later one, which
        is counted in the tally only.
    """
    text = str(entry.data["text"])
    all_kept = tally.kept == tally.received
    fits = tally.kept < budget.texts and tally.kept_chars + len(text) <= budget.chars
    if all_kept and fits:
        return entry
    if not all_kept:
        return None
    data = {
        "question_index": entry.data["question_index"],
        "number": tally.received + 1,
        "chars": len(text),
        "sha256": text_digest(text),
        "text_kept": False,
    }
    return AuditEntry(at=entry.at, actor=entry.actor, kind=entry.kind, data=data)
