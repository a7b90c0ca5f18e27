"""The server's own exceptions, one root for every package of ``server/``.

Exceptions::

    ServerError
    ├── Unavailable        a dependency (database, Redis, broker) is unreachable: retry
    │   └── RedisUnavailable         server.cluster.client
    ├── Conflict           a guarded write found the attempt changed: reload, decide
    ├── AlreadyInProgress  the candidate already has an attempt in progress
    ├── QuotaExceeded      an organisation would store more than its quota allows
    ├── AddressRefused     a webhook URL that the server may not call (SSRF)
    ├── NotFound           no such thing
    │   └── UnknownAnswer            server.storage.results: no such attempt or answer
    ├── AuthError          server.auth: a missing or invalid token
    └── ApiError           server.http.errors: an HTTP error answer chosen by a route

Foreign exceptions (drivers, Redis, the broker) are translated where they are caught,
with ``raise Unavailable(...) from exc``. Each is turned into an answer in one place:
HTTP in :mod:`server.http.errors`, socket frames by :func:`frame_message`.
"""

from __future__ import annotations

__all__ = [
    "AddressRefused",
    "AlreadyInProgress",
    "Conflict",
    "NotFound",
    "QuotaExceeded",
    "ServerError",
    "Unavailable",
    "frame_message",
]


class ServerError(Exception):
    """Root of the server's exceptions; the message is lowercase, without a period."""


class Unavailable(ServerError):
    """A dependency cannot be reached (``dependency`` names it): try again later."""

    def __init__(self, message: str, *, dependency: str = "database") -> None:
        super().__init__(message)
        self.dependency = dependency


class Conflict(ServerError):
    """A conditional write found the attempt changed: reload and decide again."""


class AlreadyInProgress(ServerError):
    """The candidate already has an attempt in progress (at any interview)."""


class QuotaExceeded(ServerError):
    """An organisation would store more than its quota allows; ``limit`` names the
    quota (``interviews`` or ``definition_bytes``)."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class AddressRefused(ServerError):
    """A webhook URL the server may not call: its host does not resolve, or resolves
    to an address that is not public (server.webhooks.resolver)."""


class NotFound(ServerError):
    """No such thing; the message may be shown to the caller."""


def frame_message(exc: ServerError) -> str:
    """The message of the error frame a candidate gets when a write failed with
    ``exc``: whether to retry, never the internal details."""
    if isinstance(exc, Unavailable):
        return "the server cannot store this right now; send it again"
    return "the server could not do this; send it again"
