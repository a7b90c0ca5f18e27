"""What every candidate connection shares; built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.ids import Millis
from server.candidate.scheduler import Scheduler
from server.candidate.sweeper import AnswersRecorded, nothing_recorded
from server.cluster.bus import EventBus
from server.cluster.lock import SessionLock
from server.metrics import Metrics
from server.settings import Settings
from server.storage.attempts import Storage


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    storage: Storage
    lock: SessionLock
    bus: EventBus
    scheduler: Scheduler
    clock: Callable[[], Millis]
    answers_recorded: AnswersRecorded = nothing_recorded
    metrics: Metrics = field(default_factory=Metrics)
