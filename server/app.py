"""Wiring: ``create_app(settings)`` builds the Starlette app; nothing happens at import.

``create_app`` puts every dependency into one :class:`Services`, in
``app.state.services``, which HTTP routes and candidate sockets read alike. The lifespan
connects storage, starts the broker, the sweeper and the webhook dispatcher, and stops
them (and the shared tick scheduler) in reverse order. Tests pass their own storage,
lock, bus or clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from evaluators.grade import Grader
from protocol.audit import LateAnswerBudget
from protocol.ids import Millis
from server.candidate.connection import candidate_endpoint
from server.candidate.scheduler import Scheduler
from server.candidate.sweeper import Sweeper
from server.cluster.bus import EventAnnouncer, EventBus, InProcessBus, RedisBus
from server.cluster.client import RedisClient
from server.cluster.lock import InProcessLock, RedisLock, SessionLock
from server.descriptors import DescriptorGuard
from server.grading.worker import Grading
from server.http import exception_handlers, middleware, routes
from server.metrics import Metrics
from server.monitor.connection import monitor_endpoint
from server.services import Check, Services
from server.settings import Settings
from server.storage.attempts import DatabaseStorage
from server.storage.catalogue import Catalogue
from server.storage.database import Database
from server.storage.events import EventLog
from server.storage.results import ResultsStore
from server.storage.webhooks import WebhookStore
from server.webhooks.dispatcher import Dispatcher
from server.webhooks.sender import Sender

logger = logging.getLogger(__name__)


def wall_clock() -> Millis:
    """The server clock: Unix epoch milliseconds."""
    return time.time_ns() // 1_000_000


def create_app(
    settings: Settings,
    *,
    storage: DatabaseStorage | None = None,
    lock: SessionLock | None = None,
    bus: EventBus | None = None,
    clock: Callable[[], Millis] = wall_clock,
    grader: Grader | None = None,
) -> Starlette:
    storage = storage or DatabaseStorage(
        Database(
            settings.database_url,
            pool_max=settings.db_pool_max,
            timeout_s=settings.db_timeout_s,
            cache_interviews=settings.interview_cache_max,
            cache_bytes=settings.interview_cache_max_bytes,
        ),
        # Two late answers of the longest length, at least (protocol/audit.py).
        late_answers=LateAnswerBudget(chars=2 * settings.max_answer_chars),
    )
    # With REDIS_URL, locks and news are shared by every instance (PRODUCT.md 2).
    redis = (
        RedisClient(settings.redis_url, prefix=settings.redis_prefix)
        if settings.redis_url
        else None
    )
    lock = lock or (RedisLock(redis) if redis else InProcessLock())
    bus = bus or (RedisBus(redis) if redis else InProcessBus())
    # Every committed write's interview events are numbered and reach the monitors
    # (server/storage/events.py, server/monitor/).
    event_log = EventLog(storage.database)
    announcer = EventAnnouncer(bus, event_log.number)
    storage.database.on_events = announcer
    # Grading (issue 4): in this process, or by workers when REDIS_URL is set.
    results = ResultsStore(storage.database)  # the same handle
    grading = Grading(settings, results, bus, clock, grader=grader)
    readiness: dict[str, Check] = {"broker": grading.queue.ready}
    if redis is not None:
        readiness["redis"] = redis.ping
    scheduler = Scheduler(clock)
    # Webhooks (issue 11): the outbox is in the database; every instance dispatches.
    webhooks = WebhookStore(storage.database)
    dispatcher = Dispatcher(
        webhooks,
        Sender(
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
            concurrency=settings.webhook_concurrency,
        ),
        clock,
        concurrency=settings.webhook_concurrency,
        poll_ms=settings.webhook_poll_ms,
    )
    # Built here, not in the lifespan: routes may be asked before it has finished.
    services = Services(
        settings=settings,
        clock=clock,
        storage=storage,
        results=results,
        catalogue=Catalogue(storage.database),
        lock=lock,
        bus=bus,
        grading=grading.service,
        scheduler=scheduler,
        metrics=Metrics(),
        readiness=readiness,
        descriptors=DescriptorGuard(settings.reserved_fds),
        events=event_log,
        webhooks=webhooks,
        wake_webhooks=dispatcher.wake,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await storage.connect()
        if redis is not None:
            await redis.start()
        await grading.start()
        requeuing = asyncio.create_task(grading.requeue_forever(), name="requeue")
        sweeper = Sweeper(
            storage,
            bus,
            clock,
            interval_ms=settings.sweep_interval_ms,
            recorded=grading.service.answers_recorded,
        )
        sweeping = asyncio.create_task(sweeper.run(), name="sweeper")
        pruning = asyncio.create_task(
            _keep_event_log(event_log, announcer, settings, clock), name="event-log"
        )
        dispatching = asyncio.create_task(dispatcher.run(), name="webhooks")
        logger.info("serving; database %s", _redacted(settings.database_url))
        try:
            yield
        finally:
            for task in (dispatching, sweeping, requeuing, pruning):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            scheduler.close()
            await grading.stop()
            await announcer.drain()
            if redis is not None:
                await redis.close()
            await storage.disconnect()

    app = Starlette(
        routes=[
            *routes(),
            WebSocketRoute("/ws/candidate", candidate_endpoint),
            WebSocketRoute("/ws/monitor", monitor_endpoint),
        ],
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.services = services
    return app


SWEEP_EVENTS_S = 2.0
PRUNE_EVERY = 30
"""Retention runs every PRUNE_EVERY sweeps (a minute)."""


async def _keep_event_log(
    events: EventLog,
    announcer: EventAnnouncer,
    settings: Settings,
    clock: Callable[[], Millis],
) -> None:
    """Number what a crashed writer left unnumbered (every 2 s), and apply the
    retention (EVENT_RETENTION_COUNT, EVENT_RETENTION_S; every minute). Every
    instance may run it: numbering takes turns, deletes are idempotent."""
    sweeps = 0
    while True:
        await asyncio.sleep(SWEEP_EVENTS_S)
        sweeps += 1
        try:
            await announcer.sweep(await events.unnumbered())
            if sweeps % PRUNE_EVERY == 0:
                removed = await events.prune(
                    clock(),
                    max_age_ms=settings.event_retention_s * 1000,
                    max_count=settings.event_retention_count,
                )
                if removed:
                    logger.info("event log retention removed %d events", removed)
        except Exception as exc:
            logger.warning("event log upkeep failed, will retry: %r", exc)


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def uvicorn_config(
    app: Starlette, settings: Settings, *, host: str, port: int
) -> uvicorn.Config:
    """How the app is served, the same for the CLI, the tests and the bench."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        # A vanished client stops holding its lock within interval + timeout (<= 30 s).
        ws_ping_interval=settings.keepalive_s,
        ws_ping_timeout=settings.keepalive_s,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=10,
    )
