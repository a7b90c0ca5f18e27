"""Tells every connection holding an attempt that the stored attempt changed, and
carries interview events (:class:`protocol.events.Event`) to their subscribers.

Whoever changes an attempt (a connection, the sweeper) publishes its id; a connection
attached to it reloads and pushes what changed. ``origin`` lets a publisher ignore
its own news. The events of every committed write (stored with it: server/storage/
events.py) are announced here for the monitors watching the interview, whichever
process wrote them (:class:`EventAnnouncer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from protocol.events import Event, EventKind
from protocol.ids import InterviewId, SessionId
from server.cluster.client import REDIS_FAILURES, RedisClient, escape_pattern

logger = logging.getLogger(__name__)

Listener = Callable[[str], None]
"""Called (without awaiting) with the publisher's ``origin``."""


class Subscription(Protocol):
    def close(self) -> None: ...


EventListener = Callable[[Event | None], None]
"""Called (without awaiting) with each event of the interview subscribed to, or
with ``None`` when events may have been lost (Redis came back): catch up from the
log (server/monitor/feeds.py)."""


class EventBus(Protocol):
    async def publish(self, session_id: SessionId, origin: str) -> None: ...

    def subscribe(self, session_id: SessionId, listener: Listener) -> Subscription: ...

    async def publish_event(self, event: Event) -> None: ...

    def subscribe_events(
        self, interview_id: InterviewId, listener: EventListener
    ) -> Subscription: ...


class _InProcessSubscription:
    __slots__ = ("bus", "session_id", "listener")

    def __init__(
        self, bus: InProcessBus, session_id: SessionId, listener: Listener
    ) -> None:
        self.bus = bus
        self.session_id = session_id
        self.listener = listener

    def close(self) -> None:
        self.bus._remove(self)


class _EventSubscription:
    __slots__ = ("listeners", "listener")

    def __init__(
        self, listeners: list[_EventSubscription], listener: EventListener
    ) -> None:
        self.listeners = listeners
        self.listener = listener

    def close(self) -> None:
        if self in self.listeners:
            self.listeners.remove(self)


class InProcessBus:
    """The embedded default: publishers and listeners share this process."""

    def __init__(self) -> None:
        self._listeners: dict[SessionId, list[_InProcessSubscription]] = {}
        self._event_listeners: dict[InterviewId, list[_EventSubscription]] = {}

    async def publish_event(self, event: Event) -> None:
        self.deliver_event(event.interview_id, event)

    def deliver_event(self, interview_id: InterviewId, event: Event | None) -> None:
        for subscription in list(self._event_listeners.get(interview_id, ())):
            try:
                subscription.listener(event)
            except Exception:  # one listener must not keep news from the others
                logger.exception("interview event listener failed")

    def subscribe_events(
        self, interview_id: InterviewId, listener: EventListener
    ) -> Subscription:
        listeners = self._event_listeners.setdefault(interview_id, [])
        subscription = _EventSubscription(listeners, listener)
        listeners.append(subscription)
        return subscription

    async def publish(self, session_id: SessionId, origin: str) -> None:
        self.deliver(session_id, origin)

    def deliver(self, session_id: SessionId, origin: str) -> None:
        for subscription in list(self._listeners.get(session_id, ())):
            try:
                subscription.listener(origin)
            except Exception:  # one listener must not keep news from the others
                logger.exception("bus listener failed")

    def sessions(self) -> list[SessionId]:
        """The attempts with a listener here."""
        return list(self._listeners)

    def interviews(self) -> list[InterviewId]:
        """The interviews with an event listener here."""
        return [key for key, listeners in self._event_listeners.items() if listeners]

    def subscribe(self, session_id: SessionId, listener: Listener) -> Subscription:
        subscription = _InProcessSubscription(self, session_id, listener)
        self._listeners.setdefault(session_id, []).append(subscription)
        return subscription

    def _remove(self, subscription: _InProcessSubscription) -> None:
        listeners = self._listeners.get(subscription.session_id, [])
        if subscription in listeners:
            listeners.remove(subscription)
        if not listeners:
            self._listeners.pop(subscription.session_id, None)


# -- Redis: news reaches the listeners on every instance -------------------------------

RECONNECTED = "redis-reconnected"
"""The ``origin`` of the news a :class:`RedisBus` gives every listener when Redis comes
back: whatever was published meanwhile was lost, so everyone reloads."""
PUBLISH_TIMEOUT_S = 1.0


class RedisBus:
    """Publishes on ``<prefix>session:<id>`` (and interview events on
    ``<prefix>events:<id>``); one subscriber connection per process, two patterns.

    Local listeners hear the news at once, without Redis; other instances hear it
    through Redis. A publish while Redis is down is logged and dropped (the change is
    already stored; readers find it when they reload), and every listener is told to
    reload once Redis is back.
    """

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._local = InProcessBus()
        client.listen_pattern(escape_pattern(self._channel("")) + "*", self._on_message)
        client.listen_pattern(escape_pattern(self._events("")) + "*", self._on_event)
        client.on_reconnect(self._reload_everyone)

    def _channel(self, session_id: str) -> str:
        return self.client.key("session", session_id)

    async def publish(self, session_id: SessionId, origin: str) -> None:
        await self._local.publish(session_id, origin)
        message = json.dumps([self.client.instance, origin])
        await self._send(self._channel(session_id), message)

    def subscribe(self, session_id: SessionId, listener: Listener) -> Subscription:
        return self._local.subscribe(session_id, listener)

    async def publish_event(self, event: Event) -> None:
        """Like :meth:`publish`, on ``<prefix>events:<interview id>``, so that the
        subscribers on every instance hear it."""
        await self._local.publish_event(event)
        fields = [event.cursor, event.session_id, event.kind, event.at, event.data]
        message = json.dumps([self.client.instance, *fields], default=str)
        await self._send(self._events(event.interview_id), message)

    def subscribe_events(
        self, interview_id: InterviewId, listener: EventListener
    ) -> Subscription:
        return self._local.subscribe_events(interview_id, listener)

    def _events(self, interview_id: str) -> str:
        return self.client.key("events", interview_id)

    async def _send(self, channel: str, message: str) -> None:
        if self.client.down:
            logger.debug("redis down; %s stays in this instance", channel)
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self.client.redis.publish(channel, message)
        except REDIS_FAILURES as exc:
            logger.warning("could not publish on %s: %r", channel, exc)

    def _on_message(self, channel: str, data: str) -> None:
        instance, origin = json.loads(data)
        if instance != self.client.instance:  # local listeners already heard it
            session_id = SessionId(channel.removeprefix(self._channel("")))
            self._local.deliver(session_id, origin)

    def _on_event(self, channel: str, data: str) -> None:
        instance, cursor, session_id, kind, at, fields = json.loads(data)
        if instance != self.client.instance:
            interview_id = InterviewId(channel.removeprefix(self._events("")))
            event = Event(
                interview_id, cursor, SessionId(session_id), EventKind(kind), at, fields
            )
            self._local.deliver_event(interview_id, event)

    def _reload_everyone(self) -> None:
        for session_id in self._local.sessions():
            self._local.deliver(session_id, RECONNECTED)
        for interview_id in self._local.interviews():
            self._local.deliver_event(interview_id, None)


class EventAnnouncer:
    """Publishes the events of committed writes (``Database.on_events``) on the bus,
    without making the writer wait: a lost announcement only delays the news, since
    monitors catch up from the log (server/monitor/feeds.py)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, events: Sequence[Event]) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(events))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                await self.bus.publish_event(event)
            except Exception:  # stored already; news is best effort
                logger.exception("could not announce event %s", event.cursor)

    async def drain(self) -> None:
        """Until every announcement begun has been sent (shutdown, tests)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
