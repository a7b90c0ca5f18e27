"""Drives one :class:`MonitorProtocol` over one Starlette WebSocket.

Three tasks per socket, as for candidates: the handler (:meth:`MonitorConnection.run`)
owns the protocol; a reader feeds frames into the inbox; a writer drains the bounded
outbox, and a reader that falls behind live events is closed with 4008. Live events
reach the inbox from the bus (every instance's and worker's, through Redis), and a
periodic check asks the protocol to catch up from the log, in case an announcement
was lost. Replays are read from the log a page at a time, each page only once the
outbox has room for it, so a long replay never overflows the send queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import assert_never

from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol.effects import VerifyToken
from protocol.errors import CloseCode
from protocol.events import Event
from protocol.ids import InterviewId
from protocol.messages import MonitorSession, User
from protocol.monitor import (
    CloseFeed,
    MonitorEffect,
    MonitorProtocol,
    OpenFeed,
    Phase,
    ReadEvents,
    remaining_ms,
)
from server.auth import AuthError, TokenRules, verify_token
from server.cluster.bus import Subscription
from server.errors import ServerError
from server.outbox import Outbox
from server.services import Services
from server.storage.events import PAGE, EventLog

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
INBOX_HIGH = 64
INBOX_LOW = 16
INBOX_EVENTS_MAX = 1000
"""Live events waiting for the handler beyond this are dropped (and read from the
log later), so a monitor that is behind holds bounded memory."""


@dataclass(frozen=True, slots=True)
class _Text:
    text: str | None


@dataclass(frozen=True, slots=True)
class _Gone:
    code: int


@dataclass(frozen=True, slots=True)
class _Live:
    event: Event | None


class _Check:
    pass


_CHECK = _Check()
_Input = _Text | _Gone | _Live | _Check


async def monitor_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    headers = websocket.headers
    if not services.settings.origin_allowed(headers.get("origin"), headers.get("host")):
        await websocket.close(CloseCode.FORBIDDEN, "origin not allowed")
        return
    await MonitorConnection(websocket, services).run()


class MonitorConnection:
    def __init__(self, websocket: WebSocket, services: Services) -> None:
        settings = services.settings
        self.ws = websocket
        self.services = services
        self.clock = services.clock
        assert services.events is not None, "create_app sets the event log"
        self.log_store: EventLog = services.events
        self.protocol = MonitorProtocol(
            now=self.clock(),
            tick_interval_ms=settings.tick_interval_ms,
            auth_timeout_ms=round(settings.auth_timeout_s * 1000),
            rate_per_s=settings.rate_per_s,
            rate_burst=settings.rate_burst,
            flood_close_ms=round(settings.flood_close_s * 1000),
            page=PAGE,
        )
        self.inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self.room = asyncio.Event()
        self.outbox = Outbox(settings.monitor_queue_max)
        self.feeds: dict[InterviewId, Subscription] = {}
        self.org: str | None = None
        self.close_code: int | None = None
        self.peer_gone = False
        self.lost = False
        """Live events were dropped at the inbox; a catch-up is queued."""
        self.writer: asyncio.Task[None] | None = None

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        self.writer = writer = asyncio.create_task(self._write())
        checker = asyncio.create_task(self._check_every())
        try:
            await self._serve()
        except Exception:
            logger.exception("monitor connection failed")
            self.close_code = self.close_code or 1011
        finally:
            reader.cancel()
            checker.cancel()
            for subscription in self.feeds.values():
                subscription.close()
            self.feeds.clear()
            await self._close(writer)
            self.services.metrics.closed(self.close_code or CloseCode.DONE)

    async def _serve(self) -> None:
        while self.close_code is None:
            event = await self._next()
            now = self.clock()
            match event:
                case None:
                    self.protocol.receive_timeout(now)
                case _Gone(code):
                    self.protocol.receive_shutdown()
                    self.peer_gone = True
                    self.close_code = code
                    return
                case _Text(text):
                    if text is None:
                        self.protocol.receive_binary(now)
                    else:
                        self.protocol.receive_text(text, now)
                case _Live(live):
                    if live is None:
                        self.lost = False
                    self.protocol.receive_event(live)
                case _Check():
                    self.protocol.receive_event(None)
            await self._perform()
            self._flush()

    async def _next(self) -> _Input | None:
        if self.inbox.qsize() <= INBOX_LOW:
            self.room.set()
        if self.protocol.phase is not Phase.AUTHENTICATING:
            return await self.inbox.get()
        remaining_s = (self.protocol.auth_deadline - self.clock()) / 1000
        try:
            async with asyncio.timeout(max(0.0, remaining_s)):
                return await self.inbox.get()
        except TimeoutError:
            return None

    def _flush(self) -> None:
        for text in self.protocol.messages_to_send():
            if not self.outbox.put(text):
                logger.warning("monitor send queue overflowed; closing 4008")
                self.protocol.receive_shutdown()
                self.close_code = CloseCode.TOO_SLOW
                return
        if self.protocol.close_code is not None:
            self.close_code = self.protocol.close_code

    # -- effects --------------------------------------------------------------------

    async def _perform(self) -> None:
        while effects := self.protocol.effects():
            for effect in effects:
                await self._perform_one(effect)
                if self.close_code is not None:
                    return

    async def _perform_one(self, effect: MonitorEffect) -> None:
        match effect:
            case VerifyToken(token):
                self._verify(token)
            case OpenFeed(interview_id):
                await self._open(interview_id)
            case CloseFeed(interview_id):
                subscription = self.feeds.pop(interview_id, None)
                if subscription is not None:
                    subscription.close()
            case ReadEvents(interview_id, after):
                await self._read_events(interview_id, after)
            case _:
                assert_never(effect)

    def _verify(self, token: str) -> None:
        try:
            claims = verify_token(TokenRules.of(self.services.settings), token)
        except AuthError as exc:
            self.protocol.receive_unauthenticated(exc.reason)
            return
        self.org = claims.org
        user = User(id=claims.sub, name=claims.name, role=claims.role)
        self.protocol.receive_authenticated(user, self.clock())

    async def _open(self, interview_id: InterviewId) -> None:
        try:
            record = await self.services.storage.get_interview(interview_id)
        except ServerError as exc:
            logger.warning("monitor could not read interview: %s", exc)
            record = None
        if record is None or self.org is None or record.org != self.org:
            self.protocol.receive_not_found(interview_id)
            return
        # Hear live events first, then read where the log stands: nothing that
        # commits in between can be missed (the protocol drops what it has).
        self.feeds[interview_id] = self.services.bus.subscribe_events(
            interview_id, self._on_event
        )
        try:
            head = await self.log_store.head(interview_id)
            attempts = await self.log_store.attempts(interview_id)
            held = await self.services.lock.held([a.session_id for a in attempts])
        except ServerError as exc:
            logger.warning("monitor snapshot failed: %s", exc)
            self.protocol.receive_failed(interview_id)
            return
        now = self.clock()
        views = record.questions
        maximum = sum(view.points for view in views)
        sessions = []
        for attempt in attempts:
            deadline = None
            if attempt.status == "in_progress":
                limit = views[attempt.question_index].time_limit_ms
                deadline = attempt.question_started_at + limit
            view = {
                "session_id": attempt.session_id,
                "candidate": {
                    "id": attempt.candidate_id,
                    "name": attempt.candidate_name,
                },
                "status": attempt.status,
                "question_index": attempt.question_index,
                "question_count": attempt.question_count,
                "connected": attempt.session_id in held,
                "remaining_ms": remaining_ms(deadline, now),
                "score": attempt.final_score,
                "max_score": attempt.max_score or maximum,
                "recommendation": attempt.recommendation,
                "flags": sorted(attempt.flags),
            }
            sessions.append(MonitorSession.model_validate(view))
        self.protocol.receive_snapshot(
            interview_id, sessions, head=head.last, pruned=head.pruned
        )

    async def _read_events(self, interview_id: InterviewId, after: int) -> None:
        # Send what is queued before reading more: a replay goes at the reader's pace.
        self._flush()
        if len(self.outbox) + PAGE > self.outbox.limit and not await self._drained():
            return
        try:
            events = await self.log_store.after(interview_id, after, PAGE)
        except ServerError as exc:
            logger.warning("monitor could not read events: %s", exc)
            self.protocol.receive_failed(interview_id)
            return
        self.protocol.receive_events(interview_id, events)

    async def _drained(self) -> bool:
        """Wait until every queued frame is sent; ``False`` when the writer ended
        first: the peer is gone, nothing will drain the queue, the connection ends
        (waiting on, the handler would hold the socket and hear live events into its
        inbox forever)."""
        assert self.writer is not None
        sent = asyncio.ensure_future(self.outbox.join())
        try:
            await asyncio.wait({sent, self.writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sent.cancel()
        if not self.writer.done():
            return True
        self.protocol.receive_shutdown()
        self.peer_gone = True
        self.close_code = self.close_code or 1006
        return False

    # -- tasks ----------------------------------------------------------------------

    def _on_event(self, event: Event | None) -> None:
        if self.inbox.qsize() < INBOX_EVENTS_MAX:
            self.inbox.put_nowait(_Live(event))
        elif not self.lost:
            # The handler is behind (a slow reader, a long replay): forget live
            # events and let the protocol read them from the log once it catches up.
            self.lost = True
            self.inbox.put_nowait(_Live(None))

    async def _check_every(self) -> None:
        interval = self.services.settings.monitor_check_s
        while True:
            await asyncio.sleep(interval)
            self.inbox.put_nowait(_CHECK)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    self.inbox.put_nowait(_Gone(int(message.get("code") or 1000)))
                    return
                text = message.get("text")
                self.inbox.put_nowait(_Text(text if isinstance(text, str) else None))
                if self.inbox.qsize() >= INBOX_HIGH:
                    self.room.clear()
                    await self.room.wait()
        except (WebSocketDisconnect, RuntimeError):
            self.inbox.put_nowait(_Gone(1006))

    async def _write(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await self.ws.send_text(await self.outbox.get())
                self.outbox.sent()

    async def _close(self, writer: asyncio.Task[None]) -> None:
        code = self.close_code or CloseCode.DONE
        if code != CloseCode.TOO_SLOW and not self.peer_gone:
            sent = asyncio.ensure_future(self.outbox.join())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.wait(
                        {sent, writer}, return_when=asyncio.FIRST_COMPLETED
                    )
            sent.cancel()
        writer.cancel()
        if self.peer_gone:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code, self.protocol.close_reason[:120])
