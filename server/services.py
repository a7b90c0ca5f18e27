"""What HTTP routes and candidate sockets share: one container, built by ``create_app``.

HTTP handlers find it in ``request.app.state.services``, sockets in
``websocket.app.state.services``; nothing else is kept in ``app.state``. What the
shell calls of grading and of the shared timer are ports defined here, so that this
module imports neither :mod:`server.grading` nor :mod:`server.candidate`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol.ids import InterviewId, Millis, SessionId
from server.cluster.bus import EventBus
from server.cluster.lock import SessionLock
from server.descriptors import DescriptorGuard
from server.metrics import Metrics
from server.settings import Settings
from server.storage.attempts import Storage
from server.storage.catalogue import Catalogue
from server.storage.events import EventLog
from server.storage.results import ResultsStore
from server.storage.webhooks import WebhookStore

Clock = Callable[[], Millis]
"""The server clock: Unix epoch milliseconds."""
Check = Callable[[], Awaitable[bool]]
"""A readiness check: whether a dependency answers."""


class GradingPort(Protocol):
    """What the sockets and the results routes ask of grading
    (:class:`server.grading.service.GradingService`)."""

    async def answers_recorded(
        self, session_id: SessionId, indexes: Sequence[int]
    ) -> None:
        """Send the jobs of answers just committed; never raises."""
        ...

    async def override(
        self,
        interview_id: InterviewId,
        session_id: SessionId,
        index: int,
        *,
        score: float,
        note: str,
        by: str,
    ) -> None:
        """Raises: UnknownAnswer."""
        ...

    async def reevaluate(self, session_id: SessionId, *, by: str) -> bool:
        """Grade a completed attempt again; whether it applied."""
        ...


class Timed(Protocol):
    """A client of the :class:`Timer`; ``generation`` changes when it is
    rescheduled, so that earlier entries go stale."""

    generation: int

    def next_due(self, now: Millis) -> Millis | None:
        """When this client next needs :meth:`on_due`, or ``None`` for never."""
        ...

    def on_due(self, now: Millis) -> None:
        """Send a tick or ask the owner to expire; must not block."""
        ...


class Timer(Protocol):
    """The one timer every socket shares
    (:class:`server.candidate.scheduler.Scheduler`)."""

    def schedule(self, client: Timed) -> None: ...
    def cancel(self, client: Timed) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    storage: Storage
    results: ResultsStore
    catalogue: Catalogue
    """The recruiters' lists and their changes (archive, revoke)."""
    lock: SessionLock
    bus: EventBus
    grading: GradingPort
    scheduler: Timer
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Mapping[str, Check] = field(default_factory=dict)
    """What ``/readyz`` checks besides the database, by name (broker, redis)."""
    descriptors: DescriptorGuard = field(default_factory=lambda: DescriptorGuard(0))
    """Whether a new candidate socket leaves the descriptors' reserve."""
    events: EventLog | None = None
    """The interview event log the monitor socket reads (create_app sets it)."""
    webhooks: WebhookStore | None = None
    """Webhook endpoints and their deliveries (``None``: not wired, as in tests of
    other routes; the webhook routes then answer 500)."""
    wake_webhooks: Callable[[], None] = field(default=lambda: None)
    """Tell this process's dispatcher that a delivery is due now (a redelivery)."""
