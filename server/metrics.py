"""Prometheus metrics of the socket layer, in a registry per app (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
            "interview_socket_closes", "Sockets closed, by code", ["code"], registry=reg
        )
        self.answers = Counter(
            "interview_answers_recorded", "Answers recorded", registry=reg
        )
        self.conflicts = Counter(
            "interview_write_conflicts", "Guarded writes that lost a race", registry=reg
        )
