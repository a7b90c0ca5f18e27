"""A :class:`server.services.Services` of fakes, and the fakes of its small ports.

:class:`FakeClock` is a wall clock that moves only when a test says so.
:class:`ManualTimer` is the :class:`server.services.Timer` port fired by hand: a test
moves the clock, then calls :meth:`ManualTimer.run_due`, which calls back what is due
the way :class:`server.candidate.scheduler.Scheduler` does (tests/unit/server/
test_scheduler.py tests that one on the real loop). :class:`RecordingGrading` is the
:class:`server.services.GradingPort` that only records what it is told. The lock and
the bus are the real in-process ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from protocol.ids import InterviewId, Millis, SessionId
from server.cluster.bus import InProcessBus
from server.cluster.lock import InProcessLock
from server.metrics import Metrics
from server.services import Services, Timed
from server.settings import Settings
from server.storage.catalogue import Catalogue
from server.storage.results import ResultsStore
from tests.fakes.storage import FakeStorage

T0: Millis = 1_700_000_000_000


class FakeClock:
    """Unix epoch milliseconds that change only when set or advanced."""

    def __init__(self, now: Millis = T0) -> None:
        self.now = now

    def __call__(self) -> Millis:
        return self.now

    def advance(self, ms: Millis) -> Millis:
        self.now += ms
        return self.now


class ManualTimer:
    """The shared timer, fired by :meth:`run_due` at the clock's time.

    Like the scheduler, it keeps one entry per client (the newest: ``generation``
    changes on every schedule and cancel), asks ``next_due`` when scheduling, never
    calls back within the run that scheduled (``due > now``) and schedules a client
    again after calling it, unless the client was rescheduled meanwhile.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._entries: dict[int, tuple[Millis, int, Timed]] = {}

    def schedule(self, client: Timed) -> None:
        client.generation += 1
        self._push(client, self.clock())

    def cancel(self, client: Timed) -> None:
        client.generation += 1
        self._entries.pop(id(client), None)

    def due_at(self, client: Timed) -> Millis | None:
        """When ``client`` is next called back, if it is scheduled."""
        entry = self._entries.get(id(client))
        return None if entry is None else entry[0]

    def run_due(self) -> int:
        """Call back every client due by now, earliest first; how many were called."""
        now = self.clock()
        due = sorted(
            (entry for entry in self._entries.values() if entry[0] <= now),
            key=lambda entry: entry[0],
        )
        for _, generation, client in due:
            del self._entries[id(client)]
            client.on_due(now)
            if generation == client.generation:
                self._push(client, now)
        return len(due)

    def _push(self, client: Timed, now: Millis) -> None:
        due = client.next_due(now)
        if due is None:
            self._entries.pop(id(client), None)
            return
        self._entries[id(client)] = (max(due, now + 1), client.generation, client)


@dataclass
class RecordingGrading:
    """The grading port: records each call; ``recorded`` is set at each
    :meth:`answers_recorded`."""

    answers: list[tuple[SessionId, list[int]]] = field(default_factory=list)
    overrides: list[tuple[SessionId, int, float]] = field(default_factory=list)
    reevaluations: list[SessionId] = field(default_factory=list)
    recorded: asyncio.Event = field(default_factory=asyncio.Event)

    async def answers_recorded(
        self, session_id: SessionId, indexes: Sequence[int]
    ) -> None:
        self.answers.append((session_id, list(indexes)))
        self.recorded.set()

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
        self.overrides.append((session_id, index, score))

    async def reevaluate(self, session_id: SessionId, *, by: str) -> bool:
        self.reevaluations.append(session_id)
        return True


class _Absent:
    """Stands in for a part the code under test must not touch."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> object:
        raise AssertionError(f"{self._name}.{attribute} used by a test of fakes")


@dataclass
class FakeServices:
    """The fakes and the :class:`Services` built from them."""

    settings: Settings = field(default_factory=Settings)
    clock: FakeClock = field(default_factory=FakeClock)
    storage: FakeStorage = field(default_factory=FakeStorage)
    lock: InProcessLock = field(default_factory=InProcessLock)
    bus: InProcessBus = field(default_factory=InProcessBus)
    grading: RecordingGrading = field(default_factory=RecordingGrading)
    metrics: Metrics = field(default_factory=Metrics)
    timer: ManualTimer = field(init=False)
    services: Services = field(init=False)

    def __post_init__(self) -> None:
        self.timer = ManualTimer(self.clock)
        self.services = Services(
            settings=self.settings,
            clock=self.clock,
            storage=self.storage,
            results=cast(ResultsStore, _Absent("results")),
            catalogue=cast(Catalogue, _Absent("catalogue")),
            lock=self.lock,
            bus=self.bus,
            grading=self.grading,
            scheduler=self.timer,
            metrics=self.metrics,
        )
