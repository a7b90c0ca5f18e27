"""Running grading: inside ``serve`` (:class:`Grading`), or as a worker process
(``interview-server worker``: :func:`install_worker`, :func:`run_worker`, :func:`main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from taskiq import AcknowledgeType, TaskiqEvents, TaskiqState
from taskiq.receiver import Receiver

from evaluators.config import GraderConfig
from evaluators.grade import Grader
from protocol.ids import Millis
from server import _gc
from server.cluster.bus import EventAnnouncer, EventBus, InProcessBus, RedisBus
from server.cluster.client import RedisClient
from server.errors import ServerError
from server.grading.broker import StreamBroker
from server.grading.capacity import Capacity
from server.grading.queue import GradingQueue, make_queue
from server.grading.service import STALE_MS, GradingService
from server.settings import Settings
from server.storage.database import Database
from server.storage.results import ResultsStore

logger = logging.getLogger(__name__)

REQUEUE_INTERVAL_S = 5.0
SHUTDOWN_TIMEOUT_S = 30.0
STOP_WAIT_S = 5.0


def wall_clock() -> Millis:
    return time.time_ns() // 1_000_000


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
        results: ResultsStore,
        bus: EventBus,
        clock: Callable[[], Millis],
        *,
        grader: Grader | None = None,
    ) -> None:
        self.queue = make_queue(settings)
        self.service = GradingService(
            results,
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
        except ServerError as exc:
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
    """Connect the database when the worker starts and build the service its tasks
    use."""
    database = Database(
        settings.database_url,
        pool_max=settings.db_pool_max,
        timeout_s=settings.db_timeout_s,
        cache_interviews=settings.interview_cache_max,
        cache_bytes=settings.interview_cache_max_bytes,
    )

    async def started(state: TaskiqState) -> None:
        if grader is None:
            from evaluators import preload

            # Before the first job, not during it: a 3 s import blocking the loop
            # made the jobs' database connects time out.
            preload(grader_config(settings))
            _gc.freeze()  # litellm's hundred megabytes, never scanned again
        await database.connect()
        # The events stored with grades (answer_evaluated, evaluated) are announced
        # on Redis, so monitors on every instance hear of them at once.
        bus: EventBus = InProcessBus()
        if settings.redis_url:
            redis = RedisClient(settings.redis_url, prefix=settings.redis_prefix)
            bus = RedisBus(redis)  # registers its listeners: before start()
            await redis.start()
            state.redis = redis
        state.announcer = announcer = EventAnnouncer(bus)
        database.on_events = announcer
        state.grading = GradingService(
            ResultsStore(database),
            grader or grader_from_settings(settings),
            bus,
            wall_clock,
            queue,
            stale_ms=stale_ms,
            concurrency=settings.grading_concurrency,
        )

    async def stopped(state: TaskiqState) -> None:
        announcer: EventAnnouncer | None = getattr(state, "announcer", None)
        if announcer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    await announcer.drain()
        redis: RedisClient | None = getattr(state, "redis", None)
        if redis is not None:
            await redis.close()
        await database.disconnect()

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
