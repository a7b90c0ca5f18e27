"""taskiq-redis's stream broker with three of its methods overridden.

``RedisStreamBroker`` (taskiq-redis) opens a Redis client for every message it sends
(``kick``) and for every acknowledgement (``_ack_generator``): an eighth of a worker's
CPU, measured. :class:`StreamBroker` sends, reads and acknowledges on one client,
sends the acknowledgements of tasks finishing together in one XACK, and reads a
message only once the worker has room for it (``listen``, :class:`Capacity`).

Its ``listen`` also outlives Redis failures, where taskiq-redis's raises and so ends
the worker (and leaves its reclaiming pipeline open): after a lost connection it
reads again with backoff, first making the consumer group again if it vanished
(Redis restarted without its data: ``NOGROUP``), from the stream's first entry, so
that the jobs sent since are read. An acknowledgement that fails is logged and
dropped (its message is gone, or is delivered again and finds its jobs done).
:meth:`StreamBroker.caught_up` tells the re-enqueue whether the workers have read
every message (server/grading/lease.py).

``_ack_generator`` is private to taskiq-redis, and ``listen`` makes its reads as
taskiq-redis's does, with the settings its constructor keeps (``count``, ``block``,
``idle_timeout``, ``unacknowledged_batch_size``), so the installed version is checked
at import: another one must be checked
against each override (tests/integration/test_broker.py has a test per override)
before it is allowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from importlib.metadata import version
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from server.batching import Batcher
from server.cluster.client import REDIS_FAILURES
from server.grading.capacity import Capacity

logger = logging.getLogger(__name__)

WRITTEN_FOR = "1.2.4"
"""The taskiq-redis version whose methods this module overrides."""
ACKS_PER_CALL = 500
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
"""Waits before reading again after Redis failed, doubling up to this."""


Entries = Sequence[tuple[bytes, dict[bytes, bytes] | None]]
"""Stream entries as redis-py returns them: (id, fields)."""


def require_version(installed: str) -> None:
    if installed != WRITTEN_FOR:
        raise RuntimeError(
            f"server.grading.broker overrides taskiq-redis {WRITTEN_FOR}, found "
            f"taskiq-redis {installed}: check each override (tests/integration/"
            f"test_broker.py) against it, or install taskiq-redis=={WRITTEN_FOR}"
        )


require_version(version("taskiq-redis"))


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
        """The messages of :meth:`_read` (one per read, ``XREAD_COUNT``), each read
        once the worker has room (:class:`Capacity`), and reading again after Redis
        failed."""
        failures = 0
        while True:
            try:
                if failures:
                    await self._create_group()
                async for message in self._read():
                    failures = 0
                    self.capacity.took()
                    yield message
                    await self.capacity.room()
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                logger.warning("grading group lost (Redis lost its data?): %s", exc)
            except REDIS_FAILURES as exc:
                logger.warning("grading stream unreachable, will read again: %r", exc)
            failures += 1
            await asyncio.sleep(min(MIN_BACKOFF_S * 2 ** (failures - 1), MAX_BACKOFF_S))

    async def _read(self) -> AsyncGenerator[AckableMessage, None]:
        """What taskiq-redis's ``listen`` reads: new messages (``XREADGROUP``, up to
        ``count``), and after each read that found some, the messages another
        consumer left unacknowledged for ``idle_timeout`` (``XAUTOCLAIM``; atomic,
        so without taskiq-redis's lock)."""
        group, name = self.consumer_group_name, self.consumer_name
        while True:
            reply = await self.client.xreadgroup(
                group, name, {self.queue_name: ">"}, count=self.count, block=self.block
            )
            # redis-py types its replies loosely: these are (stream, entries) pairs.
            fetched = cast("list[tuple[bytes, Entries]]", reply)
            if not fetched:
                continue
            for _, entries in fetched:
                for message in self._messages(entries):
                    yield message
            reply = await self.client.xautoclaim(
                self.queue_name,
                group,
                name,
                min_idle_time=self.idle_timeout,
                count=self.unacknowledged_batch_size,
            )
            # (next start id, entries, deleted ids)
            reclaimed = cast("tuple[bytes, Entries]", reply)
            for message in self._messages(reclaimed[1]):
                yield message

    def _messages(self, entries: Entries) -> list[AckableMessage]:
        # An entry trimmed from the stream while pending has no fields (Redis 6.2).
        return [
            AckableMessage(
                data=fields[b"data"],
                ack=self._ack_generator(message_id.decode(), self.queue_name),
            )
            for message_id, fields in entries
            if fields
        ]

    async def _create_group(self) -> None:
        """The consumer group, unless it exists: from the stream's first entry
        (``consumer_id`` "0"), so that what was sent since Redis came back is read."""
        try:
            await self.client.xgroup_create(
                self.queue_name,
                self.consumer_group_name,
                id=self.consumer_id,
                mkstream=True,
            )
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def caught_up(self) -> bool:
        """Whether the workers' group has read every message of the stream. No
        stream: nothing waits; a stream without the group (Redis lost it and no
        worker has made it again): every message waits; Redis failing: ``False``
        (nothing is known to be late)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xinfo_stream(self.queue_name)
                pipe.xinfo_groups(self.queue_name)
                stream, groups = await pipe.execute()
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return True
            logger.warning("grading stream not inspected: %r", exc)
            return False
        except REDIS_FAILURES as exc:
            logger.debug("grading stream not inspected: %r", exc)
            return False
        name = self.consumer_group_name.encode()
        delivered = [g["last-delivered-id"] for g in groups if g["name"] == name]
        return delivered == [stream["last-generated-id"]]

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._acks.submit((queue_name, id))

        return ack

    async def _ack(self, acks: Sequence[tuple[str, str]]) -> list[None]:
        by_stream: dict[str, list[str]] = {}
        for stream, message_id in acks:
            by_stream.setdefault(stream, []).append(message_id)
        for stream, ids in by_stream.items():
            try:
                await self.client.xack(stream, self.consumer_group_name, *ids)
            except REDIS_FAILURES as exc:
                # The message is gone with Redis's data, or is delivered again
                # and finds its jobs done: nothing to do either way.
                logger.warning("%d acknowledgements lost: %r", len(ids), exc)
        return [None] * len(acks)
