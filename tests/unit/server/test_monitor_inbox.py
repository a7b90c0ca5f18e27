"""The monitor socket's inbox stays bounded while its handler is behind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from protocol.events import Event, EventKind
from protocol.ids import InterviewId, SessionId
from server.monitor.connection import INBOX_EVENTS_MAX, MonitorConnection, _Live
from tests.unit.server._candidate import settings


def event(cursor: int) -> Event:
    return Event(InterviewId("i"), cursor, SessionId("s"), EventKind.SIGNAL, 0, {})


def test_live_events_beyond_the_bound_become_one_catch_up() -> None:
    services: Any = SimpleNamespace(
        settings=settings(), clock=lambda: 0, events=object()
    )
    socket: Any = None  # never used: only the inbox is
    connection = MonitorConnection(socket, services)

    for cursor in range(1, INBOX_EVENTS_MAX + 50):
        connection._on_event(event(cursor))

    assert connection.inbox.qsize() == INBOX_EVENTS_MAX + 1
    waiting = [connection.inbox.get_nowait() for _ in range(INBOX_EVENTS_MAX + 1)]
    assert waiting[-1] == _Live(None)  # read the rest from the log
    assert waiting[:-1] == [_Live(event(c)) for c in range(1, INBOX_EVENTS_MAX + 1)]
