"""Protocol core errors, and the public error and close codes (PROTOCOL.md §3).

Exception tree::

    ProtocolError
    ├── InvalidMessage   a client frame that cannot be understood (``bad_frame``)
    └── InvalidState     the shell called the core in a state that does not allow it
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` frame: a public contract."""

    BAD_FRAME = "bad_frame"
    UNAUTHENTICATED = "unauthenticated"
    NOT_ATTACHED = "not_attached"
    NOT_FOUND = "not_found"
    ALREADY_IN_PROGRESS = "already_in_progress"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    NO_ACTIVE_SESSION = "no_active_session"
    SESSION_LOCKED = "session_locked"
    INVALID_QUESTION_INDEX = "invalid_question_index"
    TOO_LATE = "too_late"
    ANSWER_TOO_LONG = "answer_too_long"
    RATE_LIMITED = "rate_limited"
    NOT_AVAILABLE = "not_available"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses: a public contract."""

    DONE = 1000
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TOO_SLOW = 4008
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    SUPERSEDED = 4409
    FLOODING = 4429


RECONNECTABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 4008})
"""After these a client reconnects with jittered backoff; the others are final."""


class ProtocolError(Exception):
    """Root of the protocol core's exceptions."""


class InvalidMessage(ProtocolError):
    """A client frame could not be understood.

    Attributes:
        reason: what was expected and what arrived, safe to send to the client.
        ref: the frame's ``ref`` when it had a usable one.
    """

    def __init__(self, reason: str, *, ref: str | int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ref = ref


class InvalidState(ProtocolError):
    """The shell used the core in a way its current state does not allow."""
