"""Tells every connection holding an attempt that the stored attempt changed.

Whoever changes an attempt (a connection, the sweeper) publishes its id; a connection
attached to it reloads and pushes what changed. ``origin`` lets a publisher ignore
its own news.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from protocol.ids import SessionId

logger = logging.getLogger(__name__)

Listener = Callable[[str], None]
"""Called (without awaiting) with the publisher's ``origin``."""


class Subscription(Protocol):
    def close(self) -> None: ...


class EventBus(Protocol):
    async def publish(self, session_id: SessionId, origin: str) -> None: ...

    def subscribe(self, session_id: SessionId, listener: Listener) -> Subscription: ...


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


class InProcessBus:
    """The embedded default: publishers and listeners share this process."""

    def __init__(self) -> None:
        self._listeners: dict[SessionId, list[_InProcessSubscription]] = {}

    async def publish(self, session_id: SessionId, origin: str) -> None:
        for subscription in list(self._listeners.get(session_id, ())):
            try:
                subscription.listener(origin)
            except Exception:  # one listener must not keep news from the others
                logger.exception("bus listener failed")

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
