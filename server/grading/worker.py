"""The grading queue (taskiq): tasks, brokers, and the worker process.

Two brokers, chosen by ``REDIS_URL`` (STACK-NOTES, "taskiq and taskiq-redis"):

* none: ``InMemoryBroker``; tasks run inside ``serve``, as asyncio tasks, and no
  results are kept;
* Redis: ``RedisStreamBroker``; ``interview-server worker`` processes run the tasks and
  acknowledge each one after it finished, so a task whose worker dies is delivered
  again once it has been idle for ``IDLE_TIMEOUT_MS`` (taskiq-redis only reclaims
  when a new message arrives: the periodic re-enqueue keeps messages flowing).

Retries and their backoff are not the broker's: a failed try is written to the
answer and :meth:`GradingService.requeue_pending`, run every ``REQUEUE_INTERVAL_S``
by ``serve``, sends the job again when it is due (server/grading.py). The tasks get
their :class:`GradingService` from the broker's state (``TaskiqDepends``), set by
``serve``'s lifespan or by the worker's startup hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence

from redis.asyncio import Redis
from taskiq import (
    AcknowledgeType,
    AsyncBroker,
    InMemoryBroker,
    TaskiqDepends,
    TaskiqEvents,
    TaskiqState,
)
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from evaluators.config import GraderConfig
from evaluators.grade import Grader
from protocol.ids import Millis, SessionId
from server import _gc
from server.batching import Batcher
from server.cluster.bus import EventBus, InProcessBus
from server.grading.service import STALE_MS, GradingService
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, StorageError
from server.storage.results import JobKey, ResultsStore

logger = logging.getLogger(__name__)

TASK_TIMEOUT_S = 300
"""The longest one task may run (model timeouts, retries, fallbacks, the sandbox)."""
IDLE_TIMEOUT_MS = 2 * TASK_TIMEOUT_S * 1000
"""Redis gives an unacknowledged task to another worker after this; above the longest
task, so that a slow task is not run twice."""
AUTOCLAIM_LOCK_S = 30.0
"""How long a worker killed while holding the reclaim lock can block reclaiming."""
STREAM_MAXLEN = 100_000
REQUEUE_INTERVAL_S = 5.0
JOBS_PER_MESSAGE = 100
"""Jobs sent together share one message, up to this many."""
START_WAIT_S = 1.0
ACKS_PER_CALL = 500
XREAD_COUNT = 1
"""Messages a worker takes per read: one, so that messages (up to a hundred jobs
each) spread over the workers instead of the first reader taking them all."""
SHUTDOWN_TIMEOUT_S = 30.0
STOP_WAIT_S = 5.0
READY_TIMEOUT_S = 2.0


def wall_clock() -> Millis:
    return time.time_ns() // 1_000_000


# -- tasks ----------------------------------------------------------------------------


_STATE: TaskiqState = TaskiqDepends()


def _grading(state: TaskiqState = _STATE) -> GradingService:
    service: GradingService = state.grading
    return service


_GRADING = TaskiqDepends(_grading)


def _capacity(state: TaskiqState = _STATE) -> Capacity:
    capacity: Capacity | None = getattr(state, "capacity", None)
    return capacity or Capacity(0)


_CAPACITY = TaskiqDepends(_capacity)


async def grade_answers(
    jobs: list[tuple[str, int]],
    grading: GradingService = _GRADING,
    capacity: Capacity = _CAPACITY,
) -> None:
    with capacity.holding(len(jobs)):
        keys = [(SessionId(session), index) for session, index in jobs]
        await grading.grade_answers(keys)


async def grade_answer(
    session_id: str,
    index: int,
    grading: GradingService = _GRADING,
    capacity: Capacity = _CAPACITY,
) -> None:
    """One job per message: what versions before ``grade_answers`` sent."""
    with capacity.holding(1):
        await grading.grade_answer(SessionId(session_id), index)


async def summarise(
    session_id: str,
    grading: GradingService = _GRADING,
    capacity: Capacity = _CAPACITY,
) -> None:
    with capacity.holding(1):
        await grading.summarise(SessionId(session_id))


class Capacity:
    """The jobs a worker holds, so that it reads another message only when it has
    room for it (``limit`` jobs): a burst stays in Redis for the other workers
    instead of queueing behind the grades of whichever worker read first.
    ``limit`` 0 means no limit.

    A message's jobs count from the moment its task starts; until then the message
    counts as taken. :meth:`room` is awaited before each read (StreamBroker.listen).
    """

    def __init__(self, limit: int, *, start_wait_s: float = START_WAIT_S) -> None:
        self.limit = limit
        self.start_wait_s = start_wait_s
        self.held = 0
        self.unstarted = 0
        self._changed = asyncio.Event()

    def took(self) -> None:
        """A message was handed to taskiq."""
        self.unstarted += 1

    @contextlib.contextmanager
    def holding(self, jobs: int) -> Iterator[None]:
        """A message's task runs with ``jobs`` jobs."""
        self.unstarted = max(0, self.unstarted - 1)
        self.held += jobs
        self._changed.set()
        try:
            yield
        finally:
            self.held -= jobs
            self._changed.set()

    async def room(self) -> None:
        """Until the messages taken have started and fewer than ``limit`` jobs are
        held. A message that never starts (taskiq could not run it) is given up on
        after ``start_wait_s``."""
        if not self.limit:
            return
        try:
            async with asyncio.timeout(self.start_wait_s):
                await self._until(lambda: not self.unstarted)
        except TimeoutError:
            self.unstarted = 0
        await self._until(lambda: self.held < self.limit)

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()


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
        broker.register_task(
            grade_answer, task_name="grade_answer", timeout=TASK_TIMEOUT_S
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
        unacknowledged_lock_timeout=AUTOCLAIM_LOCK_S,
        maxlen=STREAM_MAXLEN,
        xread_count=XREAD_COUNT,
    )
    return GradingQueue(broker)


class StreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker with one Redis client for sending and
    acknowledging, instead of a new client per message (an eighth of a worker's CPU,
    measured), and acknowledgements of tasks finishing together sent in one XACK."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self.capacity = Capacity(0)
        """Set by a worker: reads wait for room."""
        self._client: Redis | None = None
        self._acks: Batcher[tuple[str, str], None] = Batcher(
            self._ack, max_items=ACKS_PER_CALL
        )

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = Redis(connection_pool=self.connection_pool)
        return self._client

    async def shutdown(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose(close_connection_pool=False)
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        queue_name = message.labels.get("queue_name") or self.queue_name
        await self.client.xadd(
            queue_name,
            {b"data": message.message},
            maxlen=self.maxlen,
            approximate=self.approximate,
        )

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """taskiq-redis's reads (one message each, ``XREAD_COUNT``), each once the
        worker has room (:class:`Capacity`)."""
        async for message in super().listen():
            self.capacity.took()
            yield message
            await self.capacity.room()

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._acks.submit((queue_name, id))

        return ack

    async def _ack(self, acks: Sequence[tuple[str, str]]) -> list[None]:
        by_stream: dict[str, list[str]] = {}
        for stream, message_id in acks:
            by_stream.setdefault(stream, []).append(message_id)
        for stream, ids in by_stream.items():
            await self.client.xack(stream, self.consumer_group_name, *ids)
        return [None] * len(acks)


def grader_config(settings: Settings) -> GraderConfig:
    return GraderConfig(
        model_short_answer=settings.model_short_answer,
        model_code=settings.model_code,
        model_summary=settings.model_summary,
        api_base=settings.model_api_base,
        sandbox_concurrency=settings.sandbox_concurrency,
    )


def grader_from_settings(settings: Settings) -> Grader:
    """The graders the model settings name; none set: the offline grader."""
    # Imported when needed: it brings in litellm, which tests with a fake never use.
    from evaluators import build_grader

    return build_grader(grader_config(settings))


# -- inside serve ---------------------------------------------------------------------


class Grading:
    """What ``serve`` runs of grading: the queue, the service, the re-enqueue loop."""

    def __init__(
        self,
        settings: Settings,
        storage: DatabaseStorage,
        bus: EventBus,
        clock: Callable[[], Millis],
        *,
        grader: Grader | None = None,
    ) -> None:
        self.queue = make_queue(settings)
        self.service = GradingService(
            ResultsStore(storage),
            grader or grader_from_settings(settings),
            bus,
            clock,
            self.queue,
            concurrency=settings.grading_concurrency,
        )

    async def start(self) -> None:
        self.queue.broker.state.grading = self.service
        await self.queue.broker.startup()
        if self.queue.in_process:
            # Nothing can be running yet: take over every pending job at once.
            await self._requeue(stale_ms=0)

    async def stop(self) -> None:
        # Tasks still running after this are cut short; their answers stay pending
        # and the next start takes them over.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT_S):
                await self.queue.wait_all()
        await self.queue.broker.shutdown()

    async def requeue_forever(self, interval_s: float = REQUEUE_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._requeue()

    async def _requeue(self, *, stale_ms: int | None = None) -> None:
        try:
            sent = await self.service.requeue_pending(stale_ms=stale_ms)
        except StorageError as exc:
            logger.warning("re-enqueue of grading failed, will retry: %s", exc)
        except Exception:
            logger.exception("re-enqueue of grading failed, will retry")
        else:
            if sent:
                logger.info("re-enqueued %d grading jobs", sent)


# -- the worker process ---------------------------------------------------------------


def install_worker(
    queue: GradingQueue,
    settings: Settings,
    *,
    grader: Grader | None = None,
    stale_ms: int = STALE_MS,
) -> None:
    """Connect storage when the worker starts and build the service its tasks use."""
    storage = DatabaseStorage(
        settings.database_url,
        pool_max=settings.db_pool_max,
        timeout_s=settings.db_timeout_s,
    )

    async def started(state: TaskiqState) -> None:
        if grader is None:
            from evaluators import preload

            # Before the first job, not during it: a 3 s import blocking the loop
            # made the jobs' database connects time out.
            preload(grader_config(settings))
            _gc.freeze()  # litellm's hundred megabytes, never scanned again
        await storage.connect()
        # Interview events stay in this process until the bus carries them across
        # instances (the monitor socket's issue).
        state.grading = GradingService(
            ResultsStore(storage),
            grader or grader_from_settings(settings),
            InProcessBus(),
            wall_clock,
            queue,
            stale_ms=stale_ms,
            concurrency=settings.grading_concurrency,
        )

    async def stopped(state: TaskiqState) -> None:
        await storage.disconnect()

    queue.broker.is_worker_process = True
    # Room for the grades running and as many waiting, to keep the pipeline full.
    capacity = Capacity(2 * settings.grading_concurrency)
    queue.broker.state.capacity = capacity
    if isinstance(queue.broker, StreamBroker):
        queue.broker.capacity = capacity
    queue.broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, started)
    queue.broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, stopped)


async def run_worker(
    queue: GradingQueue, stop: asyncio.Event, *, concurrency: int
) -> None:
    """Run tasks until ``stop`` is set (after :func:`install_worker`); at most
    ``concurrency`` messages at once (their grades share the service's limit)."""
    receiver = Receiver(
        queue.broker,
        max_async_tasks=concurrency,
        ack_type=AcknowledgeType.WHEN_SAVED,  # after the task finished
        wait_tasks_timeout=SHUTDOWN_TIMEOUT_S,
    )
    try:
        await receiver.listen(stop)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await queue.broker.shutdown()


def main(settings: Settings) -> None:
    """``interview-server worker`` with ``REDIS_URL`` set: run until SIGTERM/SIGINT."""

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        queue = make_queue(settings)
        install_worker(queue, settings)
        logger.info("grading worker started on %s", queue.broker.__class__.__name__)
        await run_worker(queue, stop, concurrency=settings.grading_concurrency)
        logger.info("grading worker stopped")

    asyncio.run(work())
