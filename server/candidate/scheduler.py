"""One timer for every socket: ticks and question expiry (PROTOCOL.md section 1).

A heap ordered by due time and one ``loop.call_at`` handle for its head: no task and
no timer per socket (STACK-NOTES: per-socket timers cost more, and a FIFO breaks as
soon as a newcomer queues behind a late head). Entries are never removed; a client's
``generation`` changes when it is rescheduled and stale entries are skipped.

A client says when it is next due (:meth:`Timed.next_due`; a candidate socket
answers with its protocol's ``next_wakeup``: ticks aligned to the deadline, and the
expiry just after the question closes) and is called back with :meth:`Timed.on_due`
in the scheduler's own task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

from protocol.ids import Millis
from server.services import Timed

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, clock: Callable[[], Millis]) -> None:
        self._clock = clock
        self._heap: list[tuple[Millis, int, int, Timed]] = []
        self._sequence = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: Millis | None = None

    def schedule(self, client: Timed) -> None:
        """(Re)compute when ``client`` is next due; earlier entries become stale."""
        client.generation += 1
        self._push(client, self._clock())

    def cancel(self, client: Timed) -> None:
        client.generation += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._heap.clear()

    def _push(self, client: Timed, now: Millis) -> None:
        due = client.next_due(now)
        if due is None:
            return
        due = max(due, now + 1)  # never due again within the same run
        heapq.heappush(
            self._heap, (due, next(self._sequence), client.generation, client)
        )
        if self._armed_for is None or due < self._armed_for:
            self._arm(due)

    def _arm(self, due: Millis) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        # call_at takes the loop's monotonic clock; convert from the wall clock once.
        delay_s = max(0.0, (due - self._clock()) / 1000)
        self._handle = loop.call_at(loop.time() + delay_s, self._run)
        self._armed_for = due

    def _run(self) -> None:
        self._handle = None
        self._armed_for = None
        now = self._clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, generation, client = heapq.heappop(heap)
            if generation != client.generation:
                continue
            try:
                client.on_due(now)
            except Exception:  # one client's failure must not stop everyone's ticks
                logger.exception("timer callback failed")
                continue
            if generation == client.generation:
                self._push(client, now)
        while heap and heap[0][2] != heap[0][3].generation:
            heapq.heappop(heap)
        # A client pushed during this run may have armed the timer for a later time
        # than an entry that was already waiting: arm for the earliest.
        if heap and (self._armed_for is None or heap[0][0] < self._armed_for):
            self._arm(heap[0][0])
