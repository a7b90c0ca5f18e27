"""taskiq-redis's stream broker with three of its methods overridden.

``RedisStreamBroker`` (taskiq-redis) opens a Redis client for every message it sends
(``kick``) and for every acknowledgement (``_ack_generator``): an eighth of a worker's
CPU, measured. :class:`StreamBroker` sends and acknowledges on one client, sends the
acknowledgements of tasks finishing together in one XACK, and reads a message only
once the worker has room for it (``listen``, :class:`Capacity`).

``_ack_generator`` is private to taskiq-redis, and ``listen`` relies on how its reads
are made, so the installed version is checked at import: another one must be checked
against each override (tests/integration/test_broker.py has a test per override)
before it is allowed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from importlib.metadata import version

from redis.asyncio import Redis
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from server.batching import Batcher
from server.grading.capacity import Capacity

WRITTEN_FOR = "1.2.4"
"""The taskiq-redis version whose methods this module overrides."""
ACKS_PER_CALL = 500


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
