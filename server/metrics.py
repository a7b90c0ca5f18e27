"""Prometheus metrics of the socket layer, in a registry per app (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from protocol.errors import CloseCode

# Close codes with a meaning: RFC 6455 section 7.4.1 and its IANA registry
# (1000-1003, 1005-1015), and PROTOCOL.md's. A client chooses the code of its own
# close frame (any of 3000-4999), so every other code shares one label: a label per
# code would let clients grow the metric without bound.
KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, *range(1005, 1016), *(int(code) for code in CloseCode)}
)
OTHER_CLOSE_CODE = "other"


def close_label(code: int) -> str:
    """The ``code`` label of a close: the code itself if known, else ``other``."""
    return str(code) if code in KNOWN_CLOSE_CODES else OTHER_CLOSE_CODE


class Metrics:
    """Served at ``GET /metrics``; names start with ``interview_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry or CollectorRegistry()
        self.sockets = Gauge(
            "interview_sockets_open", "Candidate sockets open", registry=reg
        )
        self.attached = Gauge(
            "interview_sockets_attached", "Sockets attached to an attempt", registry=reg
        )
        self.frames = Counter(
            "interview_frames_received", "Client frames", registry=reg
        )
        self.closes = Counter(
            "interview_socket_closes",
            "Sockets closed, by code (unknown codes as other)",
            ["code"],
            registry=reg,
        )
        self.refusals = Counter(
            "interview_socket_refusals",
            "Candidate sockets refused at the handshake, by reason",
            ["reason"],
            registry=reg,
        )
        self.answers = Counter(
            "interview_answers_recorded", "Answers recorded", registry=reg
        )
        self.conflicts = Counter(
            "interview_write_conflicts", "Guarded writes that lost a race", registry=reg
        )

    def closed(self, code: int) -> None:
        """Count a socket closed with ``code`` (by either side)."""
        self.closes.labels(close_label(code)).inc()
