"""The single-connection lock of an attempt (PROTOCOL.md 1, "Single connection").

One live connection holds an attempt. A takeover moves the lock and tells the old
holder, which sends ``superseded`` and closes with 4409. The lock is advisory; the
database fence (``sessions.owner_epoch``) is what refuses a superseded writer.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol.ids import SessionId
from server.batching import Batcher
from server.cluster.client import RedisClient, RedisUnavailable

logger = logging.getLogger(__name__)

Superseded = Callable[[], None]
"""Called (without awaiting) on the old holder when a takeover moves the lock."""


class Acquired(enum.Enum):
    """How :meth:`SessionLock.acquire` went."""

    LOCKED = "locked"  # another holder has it; nothing changed
    ACQUIRED = "acquired"  # it was free (or already ours)
    TAKEN_OVER = "taken_over"  # another holder had it and was told


class SessionLock(Protocol):
    async def acquire(
        self,
        session_id: SessionId,
        holder: str,
        *,
        takeover: bool,
        on_superseded: Superseded,
    ) -> Acquired:
        """Take the lock, or take it over from another holder when ``takeover``."""
        ...

    async def release(self, session_id: SessionId, holder: str) -> None:
        """Give the lock up if ``holder`` still has it."""
        ...

    async def holds(self, session_id: SessionId, holder: str) -> bool: ...

    async def held(self, session_ids: Sequence[SessionId]) -> set[SessionId]:
        """Which of ``session_ids`` some live connection holds (monitors show it)."""
        ...


@dataclass(slots=True)
class _Hold:
    holder: str
    on_superseded: Superseded


class InProcessLock:
    """The embedded default: every connection lives in this process."""

    def __init__(self) -> None:
        self._holds: dict[SessionId, _Hold] = {}

    async def acquire(
        self,
        session_id: SessionId,
        holder: str,
        *,
        takeover: bool,
        on_superseded: Superseded,
    ) -> Acquired:
        current = self._holds.get(session_id)
        outcome = Acquired.ACQUIRED
        if current is not None and current.holder != holder:
            if not takeover:
                return Acquired.LOCKED
            current.on_superseded()
            outcome = Acquired.TAKEN_OVER
        self._holds[session_id] = _Hold(holder, on_superseded)
        return outcome

    async def release(self, session_id: SessionId, holder: str) -> None:
        current = self._holds.get(session_id)
        if current is not None and current.holder == holder:
            del self._holds[session_id]

    async def holds(self, session_id: SessionId, holder: str) -> bool:
        current = self._holds.get(session_id)
        return current is not None and current.holder == holder

    async def held(self, session_ids: Sequence[SessionId]) -> set[SessionId]:
        return {session_id for session_id in session_ids if session_id in self._holds}


# -- Redis: one lease per attempt, shared by every instance ----------------------------

# KEYS[1] the attempt's key; ARGV: our value, the lease (ms), "1" to take over.
# Returns {0, holder} locked, {1, ""} acquired, {2, holder} taken over from holder.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
local other = current and current ~= ARGV[1]
if other and ARGV[3] ~= '1' then return {0, current} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if other then return {2, current} end
return {1, ''}
"""
# Compare-and-delete (only the holder releases), of many keys: KEYS[i] when its value
# is ARGV[i].
_RELEASE_MANY = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    released = released + redis.call('DEL', key)
  end
end
return released
"""
# KEYS: held keys; ARGV[1] the lease, ARGV[i + 1] the value of KEYS[i]. Per key:
# 1 renewed, 2 set again (the lease had lapsed, or Redis lost it), 0 held by another.
_RENEW = """
local results = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    results[i] = 1
  elseif not current then
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1])
    results[i] = 2
  else
    results[i] = 0
  end
end
return results
"""
_OUTCOMES = {0: Acquired.LOCKED, 1: Acquired.ACQUIRED, 2: Acquired.TAKEN_OVER}
_RENEWED, _RESTORED, _LOST = 1, 2, 0
RENEW_BATCH = 500


class RedisLock:
    """Leases in Redis: the lock of every attempt, whichever instance serves it.

    The value of an attempt's key is ``<instance>/<holder>``. A held lease is renewed
    by one loop per process while its socket lives; a process that dies lets its
    leases lapse after ``lease_ms``, a socket that vanishes lets go when keepalive
    closes it. A takeover replaces the value atomically and tells the old holder's
    instance on its channel ``<prefix>lock:<instance>``; a renewal that finds another
    holder tells the local holder too, so a lost message only delays the news.
    """

    def __init__(
        self, client: RedisClient, *, lease_ms: int = 10_000, renew_ms: int = 3_000
    ) -> None:
        self.client = client
        self.lease_ms = lease_ms
        self.renew_ms = renew_ms
        self._releases: Batcher[tuple[str, str], None] = Batcher(
            self._release_many, max_items=RENEW_BATCH
        )
        self._holds: dict[SessionId, _Hold] = {}
        self._restoring: asyncio.Task[None] | None = None
        self._channel = client.key("lock", client.instance)
        client.listen(self._channel, self._on_message)
        client.on_reconnect(self._renew_soon)
        client.every(renew_ms / 1000, self._renew_once)

    def _value(self, holder: str) -> str:
        return f"{self.client.instance}/{holder}"

    def _key(self, session_id: SessionId) -> str:
        return self.client.key("lock", "session", session_id)

    async def acquire(
        self,
        session_id: SessionId,
        holder: str,
        *,
        takeover: bool,
        on_superseded: Superseded,
    ) -> Acquired:
        """Raises :class:`RedisUnavailable` when Redis cannot be reached."""
        await self._restored()
        redis = self.client.redis
        arguments = [self._value(holder), str(self.lease_ms), "1" if takeover else "0"]
        code, previous = await self.client.call(
            lambda: redis.eval(_ACQUIRE, 1, self._key(session_id), *arguments)
        )
        outcome = _OUTCOMES[int(code)]
        if outcome is Acquired.TAKEN_OVER:
            await self._tell(session_id, str(previous))
        if outcome is not Acquired.LOCKED:
            self._holds[session_id] = _Hold(holder, on_superseded)
        return outcome

    async def release(self, session_id: SessionId, holder: str) -> None:
        if self._mine(session_id, holder):
            del self._holds[session_id]
        await self._delete(session_id, holder)

    async def _delete(self, session_id: SessionId, holder: str) -> None:
        try:
            await self._releases.submit((self._key(session_id), self._value(holder)))
        except RedisUnavailable as exc:
            logger.warning("lock release failed, its lease will lapse: %s", exc)

    async def _release_many(self, leases: Sequence[tuple[str, str]]) -> list[None]:
        """Releases requested together go in one script (a thousand sockets closing
        at once made a thousand calls, more than the connection pool holds)."""
        keys = [key for key, _ in leases]
        values = [value for _, value in leases]
        redis = self.client.redis
        await self.client.call(
            lambda: redis.eval(_RELEASE_MANY, len(keys), *keys, *values)
        )
        return [None] * len(leases)

    def _mine(self, session_id: SessionId, holder: str) -> bool:
        current = self._holds.get(session_id)
        return current is not None and current.holder == holder

    async def holds(self, session_id: SessionId, holder: str) -> bool:
        key = self._key(session_id)
        try:
            value = await self.client.call(lambda: self.client.redis.get(key))
        except RedisUnavailable:  # what this process last knew
            return self._mine(session_id, holder)
        return bool(value == self._value(holder))

    async def held(self, session_ids: Sequence[SessionId]) -> set[SessionId]:
        """From Redis (every instance's leases); what this process holds while
        Redis is down. A crashed instance's leases count until they lapse."""
        if not session_ids:
            return set()
        keys = [self._key(session_id) for session_id in session_ids]
        try:
            values = await self.client.call(lambda: self.client.redis.mget(keys))
        except RedisUnavailable:
            return {s for s in session_ids if s in self._holds}
        return {s for s, value in zip(session_ids, values, strict=True) if value}

    # -- telling the old holder -----------------------------------------------------

    async def _tell(self, session_id: SessionId, previous: str) -> None:
        instance, _, holder = previous.partition("/")
        if instance == self.client.instance:
            self._superseded(session_id, holder)
            return
        channel = self.client.key("lock", instance)
        message = json.dumps([session_id, holder])
        redis = self.client.redis
        try:
            await self.client.call(lambda: redis.publish(channel, message))
        except RedisUnavailable as exc:  # its renewal will find out
            logger.warning("could not tell a superseded holder: %s", exc)

    def _on_message(self, channel: str, data: str) -> None:
        session_id, holder = json.loads(data)
        self._superseded(SessionId(session_id), holder)

    def _superseded(self, session_id: SessionId, holder: str) -> None:
        if self._mine(session_id, holder):
            self._holds.pop(session_id).on_superseded()

    # -- renewal --------------------------------------------------------------------

    def _renew_soon(self) -> None:
        # Redis came back, maybe empty: put our leases back before anyone else.
        self._restoring = asyncio.get_running_loop().create_task(self._renew_once())

    async def _restored(self) -> None:
        """Refuse while reconnecting, so that no lease of ours is lost to a newcomer
        here; other instances reconnect as quickly (MAX_BACKOFF_S) and the database
        fence settles whatever remains."""
        if not self.client.connected:
            raise RedisUnavailable("redis unavailable: reconnecting")
        if self._restoring is not None:
            await asyncio.shield(self._restoring)

    async def _renew_once(self) -> None:
        try:
            await self._renew_all()
        except RedisUnavailable as exc:
            logger.debug("lease renewal failed, will retry: %s", exc)

    async def _renew_all(self) -> None:
        held = list(self._holds.items())
        for start in range(0, len(held), RENEW_BATCH):
            await self._renew(held[start : start + RENEW_BATCH])

    async def _renew(self, held: list[tuple[SessionId, _Hold]]) -> None:
        keys = [self._key(session_id) for session_id, _ in held]
        values = [self._value(hold.holder) for _, hold in held]
        redis = self.client.redis
        results = await self.client.call(
            lambda: redis.eval(_RENEW, len(keys), *keys, str(self.lease_ms), *values)
        )
        for (session_id, hold), result in zip(held, results, strict=True):
            mine = self._mine(session_id, hold.holder)
            if result == _LOST and mine:
                self._superseded(session_id, hold.holder)
            elif result == _RESTORED and not mine:
                # Released while this renewal was on its way: undo the restore.
                await self._delete(session_id, hold.holder)
