"""One Redis connection pool and one pub/sub subscriber per process.

:class:`RedisLock` and :class:`RedisBus` share a :class:`RedisClient`: commands go
through its pool, and the messages they listen for arrive through its single
subscriber connection, which a background task keeps alive. When Redis goes away the
task reconnects with backoff; once it is back, every ``on_reconnect`` callback runs so
that what was missed meanwhile (locks lapsed, news published) is made good.

Nothing connects at construction; :meth:`RedisClient.start` and
:meth:`RedisClient.close` are called by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.errors import Unavailable

logger = logging.getLogger(__name__)

Periodic = Callable[[], Awaitable[None]]
Handler = Callable[[str, str], None]
"""Called (without awaiting) with a message's channel and data."""
Reconnected = Callable[[], None]

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 100
"""Redis connections per process; more callers wait (up to COMMAND_TIMEOUT_S)."""
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
READ_POLL_S = 1.0
PING_EVERY_S = 5.0
SILENT_PINGS = 3
"""A subscriber connection that answered nothing, not even a ping, for this many ping
intervals is dead (a half-open TCP connection never raises); it is made again."""
CLOSE_TIMEOUT_S = 2.0
"""How long :meth:`RedisClient.close` waits for its tasks to end, then for the pool."""
RECANCEL_EVERY_S = 0.05

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisUnavailable(Unavailable):
    """Redis could not be reached; the shell tells the client to try again.

    An :class:`Unavailable` like the database's: Redis holds shared state (who holds
    which attempt), and the shell answers both the same way.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, dependency="redis")


def escape_pattern(text: str) -> str:
    """``text`` as a literal inside a PSUBSCRIBE glob pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisClient:
    """A Redis pool with a key ``prefix`` and an ``instance`` id for this process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "interview:",
        ping_every_s: float = PING_EVERY_S,
    ) -> None:
        self.prefix = prefix
        self.ping_every_s = ping_every_s
        self.instance = uuid.uuid4().hex
        # One quick retry (no backoff) gets past a pooled connection that died with
        # a restarted server; the subscriber loop below does the patient retrying.
        # A blocking pool: a burst (a thousand sockets closing at once, each releasing
        # its lock) waits for a connection instead of failing with
        # MaxConnectionsError, as redis-py's default pool does when it runs out.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=COMMAND_TIMEOUT_S,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 1),
        )
        self.redis: Redis = Redis.from_pool(pool)
        self._channels: dict[str, Handler] = {}
        self._patterns: dict[str, Handler] = {}
        self._reconnected: list[Reconnected] = []
        self._periodic: list[tuple[float, Periodic]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriber: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._was_down = False

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def down(self) -> bool:
        """Whether the subscriber lost Redis and has not got it back yet."""
        return self._was_down

    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up (news is being received)."""
        return self._connected.is_set()

    # -- registration, before start() ---------------------------------------------

    def listen(self, channel: str, handler: Handler) -> None:
        self._before_start()
        self._channels[channel] = handler

    def listen_pattern(self, pattern: str, handler: Handler) -> None:
        self._before_start()
        self._patterns[pattern] = handler

    def on_reconnect(self, callback: Reconnected) -> None:
        self._reconnected.append(callback)

    def every(self, interval_s: float, job: Periodic) -> None:
        """Run ``job`` every ``interval_s`` from start() to close(); should not raise
        (an exception is logged and the job runs again at the next interval)."""
        self._before_start()
        self._periodic.append((interval_s, job))

    def _before_start(self) -> None:
        if self._subscriber is not None:
            raise RuntimeError("register listeners before start()")

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, *, wait_s: float = CONNECT_TIMEOUT_S) -> None:
        """Start the subscriber; wait up to ``wait_s`` for its first connection.

        Redis being down is not fatal: the subscriber keeps trying, ``/readyz``
        reports it, and attaching fails with "try again" meanwhile.
        """
        self._subscriber = asyncio.create_task(self._subscribe(), name="redis-sub")
        self._tasks = [
            asyncio.create_task(_repeat(interval_s, job), name="redis-periodic")
            for interval_s, job in self._periodic
        ]
        try:
            async with asyncio.timeout(wait_s):
                await self._connected.wait()
        except TimeoutError:
            logger.warning("redis is not reachable yet; retrying in the background")

    async def close(self) -> None:
        """Stop the background tasks, then the pool; bounded whatever Redis does."""
        tasks = [*self._tasks, *([self._subscriber] if self._subscriber else [])]
        await _stop(tasks)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.redis.aclose()
        except REDIS_FAILURES as exc:
            logger.warning("redis pool did not close cleanly: %r", exc)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                return bool(await self.redis.ping())
        except REDIS_FAILURES:
            return False

    async def call(self, command: Callable[[], Any]) -> Any:
        """Await ``command()`` within the command timeout.

        Raises:
            RedisUnavailable: Redis failed or did not answer in time.
        """
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                return await command()
        except REDIS_FAILURES as exc:
            raise RedisUnavailable(f"redis unavailable: {exc!r}") from exc

    # -- the subscriber task ------------------------------------------------------

    async def _subscribe(self) -> None:
        backoff = MIN_BACKOFF_S
        while True:
            pubsub = self.redis.pubsub()
            try:
                await self._join(pubsub)
                backoff = MIN_BACKOFF_S
                await self._read(pubsub)
            except REDIS_FAILURES as exc:
                self._lost(exc)
            except Exception as exc:  # a bug must not end news for good
                logger.exception("redis subscriber failed")
                self._lost(exc)
            finally:
                with contextlib.suppress(*REDIS_FAILURES):
                    async with asyncio.timeout(COMMAND_TIMEOUT_S):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, MAX_BACKOFF_S)

    async def _join(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            # This instance's own channel, so that there is always a subscription
            # (redis-py has no connection to read from otherwise).
            await pubsub.subscribe(self.key("instance", self.instance), *self._channels)
            if self._patterns:
                await pubsub.psubscribe(*self._patterns)
        self._connected.set()
        if self._was_down:
            logger.warning("redis is reachable again")
            self._was_down = False
            for callback in self._reconnected:
                self._safely(callback)

    def _lost(self, exc: BaseException) -> None:
        if not self._was_down:
            logger.warning("redis connection lost, reconnecting: %r", exc)
        self._was_down = True
        self._connected.clear()

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while True:
            message = await pubsub.get_message(
                timeout=min(READ_POLL_S, self.ping_every_s)
            )
            now = loop.time()
            if message is not None:
                heard = now
                self._dispatch(message)
            elif now - heard > SILENT_PINGS * self.ping_every_s:
                raise TimeoutError(f"redis silent for {now - heard:.1f} s")
            if now - pinged >= self.ping_every_s:
                pinged = now
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await pubsub.ping()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            handler = self._channels.get(message["channel"])
        elif kind == "pmessage":
            handler = self._patterns.get(message["pattern"])
        else:
            return  # subscription confirmations and pongs only prove liveness
        if handler is not None:
            channel, data = message["channel"], message["data"]
            self._safely(lambda: handler(channel, data))

    @staticmethod
    def _safely(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # one handler must not stop the subscriber
            logger.exception("redis message handler failed")


async def _repeat(interval_s: float, job: Periodic) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception:  # a bug must not stop the job (lease renewal) for good
            logger.exception("redis periodic job failed")


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait up to ``CLOSE_TIMEOUT_S`` for them to end.

    A cancellation can be lost, so it is repeated until the task ends: on Python
    3.11, ``asyncio.wait_for`` (which redis-py sends every command through when a
    socket timeout is set) returns the result of a send that completed in the loop
    iteration the cancellation arrived in, and drops the cancellation (CPython
    bpo-42130, gh-86296; fixed in 3.12). A renewal loop that lost it would go on
    renewing, and ``close()`` would wait for it forever.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT_S
    pending = {task for task in tasks if not task.done()}
    while pending and (left := deadline - loop.time()) > 0:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_S, left))
    if pending:
        names = sorted(task.get_name() for task in pending)
        logger.warning(
            "redis tasks did not stop within %s s: %s", CLOSE_TIMEOUT_S, names
        )
    for task in tasks:  # retrieved, so that an exception is not lost in silence
        if task.done() and not task.cancelled() and (error := task.exception()):
            logger.error("redis task %s failed", task.get_name(), exc_info=error)
