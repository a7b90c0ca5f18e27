"""Who may start or restart an attempt (PROTOCOL.md section 1, ``start``/``restart``).

The shell gathers the facts (is the candidate invited, what is in progress, how many
attempts were used) and these functions decide; ``None`` means go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.attempt import Attempt
from protocol.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused, as the ``error`` frame will say it."""

    code: ErrorCode
    message: str


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
    *, invited: bool, active: Attempt | None, used: int, max_attempts: int
) -> Refusal | None:
    """May the candidate start a new attempt?

    Args:
        invited: the interview exists and the candidate is invited to it.
        active: the candidate's attempt in progress (of any interview), after expiry.
        used: attempts of this interview already made, abandoned ones included.
        max_attempts: the interview's limit.
    """
    if not invited:
        return NOT_FOUND
    if active is not None and active.in_progress:
        return IN_PROGRESS
    if used >= max_attempts:
        return EXHAUSTED
    return None


def decide_restart(
    *, active: Attempt | None, used: int, max_attempts: int
) -> Refusal | None:
    """May the candidate abandon ``active`` and start the same interview again?"""
    if active is None or not active.in_progress:
        return NO_ACTIVE
    if used >= max_attempts:
        return EXHAUSTED
    return None
