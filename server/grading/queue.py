"""The grading queue (taskiq): where jobs are sent, on one of two brokers.

Two brokers, chosen by ``REDIS_URL`` (STACK-NOTES, "taskiq and taskiq-redis"):

* none: ``InMemoryBroker``; tasks run inside ``serve``, as asyncio tasks, and no
  results are kept;
* Redis: :class:`StreamBroker`; ``interview-server worker`` processes run the tasks
  and acknowledge each one after it finished.

What the broker loses is found again from the database: a job whose lease ran out
(a task whose worker died, a message lost with Redis's data, a job its instance
died before sending) is sent again by :meth:`GradingService.requeue_pending`, run
every ``REQUEUE_INTERVAL_S`` by ``serve`` (server/grading/lease.py). Redis's own
redelivery of a dead worker's messages (after ``IDLE_TIMEOUT_MS``) only clears them
away: by then their jobs were graded, and the copy finds nothing to do.

Retries and their backoff are not the broker's either: a failed try is written to
the answer, and the re-enqueue sends the job again when it is due
(server/grading/service.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from taskiq import AsyncBroker, InMemoryBroker

from protocol.ids import SessionId
from server.batching import Batcher
from server.grading.broker import StreamBroker
from server.grading.capacity import Capacity
from server.grading.tasks import TASK_TIMEOUT_S, grade_answers, summarise
from server.settings import Settings
from server.storage.results import JobKey

__all__ = ["Capacity", "GradingQueue", "make_queue"]

IDLE_TIMEOUT_MS = 2 * TASK_TIMEOUT_S * 1000
"""Redis gives an unacknowledged message to another worker after this (reclaimed
after a read that found new messages, StreamBroker._read); above the longest task,
so that a slow task is never taken from a live worker. The jobs of a dead worker
are sent again long before, when their leases run out."""
STREAM_MAXLEN = 100_000
JOBS_PER_MESSAGE = 100
"""Jobs sent together share one message, up to this many."""
XREAD_COUNT = 1
"""Messages a worker takes per read: one, so that messages (up to a hundred jobs
each) spread over the workers instead of the first reader taking them all."""
READY_TIMEOUT_S = 2.0


class GradingQueue:
    """A broker with the grading tasks; the :class:`JobQueue` of grading.

    Jobs sent while a message is being sent go together in the next one
    (:class:`server.batching.Batcher`): one message per answer when answers come
    one at a time, up to ``JOBS_PER_MESSAGE`` under load.
    """

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self._grade_many = broker.register_task(
            grade_answers, task_name="grade_answers", timeout=TASK_TIMEOUT_S
        )
        self._summarise = broker.register_task(
            summarise, task_name="summarise", timeout=TASK_TIMEOUT_S
        )
        self._jobs: Batcher[JobKey, None] = Batcher(
            self._send, max_items=JOBS_PER_MESSAGE
        )

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def grade(self, session_id: SessionId, index: int) -> None:
        await self._jobs.submit((session_id, index))

    async def _send(self, jobs: Sequence[JobKey]) -> list[None]:
        await self._grade_many.kiq(list(jobs))
        return [None] * len(jobs)

    async def summarise(self, session_id: SessionId) -> None:
        await self._summarise.kiq(session_id)

    async def caught_up(self) -> bool:
        if not isinstance(self.broker, StreamBroker):
            return True  # in-process tasks start at once and hold their jobs
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                return await self.broker.caught_up()
        except TimeoutError:
            return False  # a hung Redis: nothing is known to be late

    async def ready(self) -> bool:
        if not isinstance(self.broker, StreamBroker):
            return True  # the in-process broker cannot be unreachable
        async with asyncio.timeout(READY_TIMEOUT_S):
            return bool(await self.broker.client.ping())

    async def wait_all(self) -> None:
        """Until every task running in this process finished (tests)."""
        if isinstance(self.broker, InMemoryBroker):
            await self.broker.wait_all()


def make_queue(
    settings: Settings, *, idle_timeout_ms: int = IDLE_TIMEOUT_MS
) -> GradingQueue:
    if not settings.redis_url:
        return GradingQueue(InMemoryBroker())
    prefix = settings.redis_prefix
    broker = StreamBroker(
        settings.redis_url,
        queue_name=f"{prefix}grading",
        consumer_group_name=f"{prefix}graders",
        consumer_id="0",  # a group made after the first task still gets it
        idle_timeout=idle_timeout_ms,
        maxlen=STREAM_MAXLEN,
        xread_count=XREAD_COUNT,
        # One quick retry gets past a pooled connection that died with a restarted
        # Redis (as server/cluster/client.py): the first send after it succeeds.
        retry=Retry(NoBackoff(), 1),
    )
    return GradingQueue(broker)
