"""Drives one :class:`CandidateProtocol` over one Starlette WebSocket.

The way in (start, resume, restart) is :mod:`server.candidate.lobby`; this module
attaches, performs guarded writes and feeds results back to the protocol.

Three tasks per socket: the handler (this class's :meth:`run`) owns the protocol and
its attempt; a reader feeds frames into the handler's inbox; a writer drains the
bounded outbox. The bus reaches the handler only through the inbox, so every change
of the attempt happens in one task.

The timer is the protocol's: after each step the handler reschedules the socket on
the shared scheduler from :meth:`CandidateProtocol.next_wakeup` (only when it
moved). The scheduler calls :meth:`CandidateConnection.on_due` from its own task:
a wakeup that would change the attempt (an expiry) is handed to the handler through
the inbox; a tick only reads it, so ``on_due`` asks the protocol for it and sends
what the protocol queued, as the handler does after every input (the outbox keeps
only the newest tick waiting; an overflow closes 4008 from the handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import assert_never

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import admission, audit, lease as leases
from protocol.admission import Attach, Refusal
from protocol.attempt import Attempt
from protocol.audit import AuditEntry
from protocol.connection import (
    AttachAttempt,
    CandidateProtocol,
    Commit,
    Effect,
    LoadActiveAttempt,
    Phase,
    RecordAudit,
    RestartAttempt,
    StartAttempt,
    StoreDraft,
    VerifyToken,
)
from protocol.errors import CloseCode
from protocol.ids import InterviewId, Millis, SessionId, UserId
from protocol.messages import User
from server.auth import AuthError, TokenRules, verify_token
from server.candidate.lobby import Lobby
from server.cluster.bus import Subscription
from server.cluster.lock import Acquired
from server.errors import Conflict, ServerError, frame_message
from server.outbox import Outbox
from server.services import Services

logger = logging.getLogger(__name__)

MAX_RACES = 5
INBOX_HIGH = 64
INBOX_LOW = 16
"""The reader stops reading frames at HIGH waiting ones and resumes at LOW."""
CLOSE_TIMEOUT_S = 5.0
AT_CAPACITY = "server at capacity: try again later"


@dataclass(frozen=True, slots=True)
class _Text:
    text: str | None  # None: a binary frame


@dataclass(frozen=True, slots=True)
class _Gone:
    code: int


class _Wake:
    """The timer found an expiry due: the handler makes the change."""


class _Superseded:
    pass


class _TooSlow:
    """A tick found the send queue full: close 4008 (the client is still there)."""


@dataclass(frozen=True, slots=True)
class _Changed:
    session_id: SessionId


_Event = _Text | _Gone | _Wake | _Superseded | _TooSlow | _Changed
_WAKE = _Wake()
_SUPERSEDED = _Superseded()
_TOO_SLOW = _TooSlow()


async def candidate_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    if not services.descriptors.admit():
        # Near the descriptor limit: refuse before anything needs the database.
        services.metrics.refusals.labels("descriptors").inc()
        logger.info("socket refused: descriptors are nearly all in use")
        refusal = PlainTextResponse(AT_CAPACITY, 503, headers={"Retry-After": "1"})
        await websocket.send_denial_response(refusal)
        return
    await websocket.accept()
    headers = websocket.headers
    if not services.settings.origin_allowed(headers.get("origin"), headers.get("host")):
        await websocket.close(CloseCode.FORBIDDEN, "origin not allowed")
        return
    await CandidateConnection(websocket, services).run()


class CandidateConnection:
    def __init__(self, websocket: WebSocket, services: Services) -> None:
        settings = services.settings
        self.ws = websocket
        self.services = services
        self.storage = services.storage
        self.clock = services.clock
        self.holder = uuid.uuid4().hex
        self.lease_key = leases.derive_key(str(settings.jwt_secret))
        self.protocol = CandidateProtocol(
            now=self.clock(),
            tick_interval_ms=settings.tick_interval_ms,
            auth_timeout_ms=round(settings.auth_timeout_s * 1000),
            max_answer_chars=settings.max_answer_chars,
            rate_per_s=settings.rate_per_s,
            rate_burst=settings.rate_burst,
            flood_close_ms=round(settings.flood_close_s * 1000),
        )
        self.inbox: asyncio.Queue[_Event] = asyncio.Queue()
        self.room = asyncio.Event()
        self.outbox = Outbox(settings.send_queue_max)
        self.fence: int | None = None
        self.generation = 0
        self.due_at: Millis | None = None
        """When the scheduler holds an entry for this socket, if it does."""
        self.subscription: Subscription | None = None
        self.close_code: int | None = None
        self.peer_gone = False
        self.races = 0
        self.log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(
            logger, {"holder": self.holder}
        )

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        metrics = self.services.metrics
        metrics.sockets.inc()
        try:
            await self._serve()
        except Exception:
            self.log.exception("candidate connection failed")
            self.close_code = self.close_code or 1011
        finally:
            reader.cancel()
            await self._detach()
            await self._close(writer)
            metrics.sockets.dec()
            metrics.closed(self.close_code or CloseCode.DONE)

    async def _serve(self) -> None:
        while self.close_code is None:
            event = await self._next_event()
            if event is None:
                self.protocol.receive_timeout(self.clock())
            elif isinstance(event, _Gone):
                self.protocol.receive_shutdown()
                self.peer_gone = True
                self.close_code = event.code
                return
            else:
                await self._handle(event)
            await self._perform()
            self._flush()
            self._reschedule()

    async def _next_event(self) -> _Event | None:
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

    async def _handle(self, event: _Event) -> None:
        now = self.clock()
        self.races = 0
        match event:
            case _Text(text):
                self.services.metrics.frames.inc()
                if text is None:
                    self.protocol.receive_binary(now)
                else:
                    self.protocol.receive_text(text, now)
            case _TooSlow():
                self._too_slow()
            case _Wake():
                self.protocol.receive_timer(now)
            case _Superseded():
                self.protocol.supersede()
            case _Changed(session_id):
                fresh = await self.storage.load_attempt(session_id)
                self.protocol.receive_changed(fresh, now)
            case _Gone():  # pragma: no cover - handled by _serve
                pass

    def _flush(self) -> None:
        if not self._send_queued():
            self._too_slow()
            return
        if self.protocol.close_code is not None:
            self.close_code = self.protocol.close_code

    def _send_queued(self) -> bool:
        """Move the protocol's queued frames to the outbox; ``False`` on overflow."""
        put = self.outbox.put
        for text in self.protocol.messages_to_send():
            if not put(text):
                return False
        return True

    def _too_slow(self) -> None:
        self.log.warning("send queue overflowed; closing 4008")
        self.protocol.receive_shutdown()
        self.close_code = CloseCode.TOO_SLOW

    # -- reader and writer tasks ----------------------------------------------------

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
                    # Stop reading until the handler catches up: TCP pushes back.
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
        """Send what is queued, then the close frame (unless the client is gone)."""
        code = self.close_code or CloseCode.DONE
        if code != CloseCode.TOO_SLOW and not self.peer_gone:
            await self._drain(writer)
        writer.cancel()
        if self.peer_gone:
            self.log.info("client gone with %s", code)
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code, self.protocol.close_reason[:120])
        self.log.info("socket closed with %s", code)

    async def _drain(self, writer: asyncio.Task[None]) -> None:
        """Let the writer send what is queued (a writer that died sends nothing)."""
        sent = asyncio.ensure_future(self.outbox.join())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.wait({sent, writer}, return_when=asyncio.FIRST_COMPLETED)
        sent.cancel()

    # -- effects --------------------------------------------------------------------

    async def _perform(self) -> None:
        while effects := self.protocol.effects():
            for effect in effects:
                await self._perform_one(effect)

    async def _perform_one(self, effect: Effect) -> None:
        now = self.clock()
        try:
            match effect:
                case VerifyToken(token):
                    await self._verify(token)
                case LoadActiveAttempt(candidate_id):
                    active = await self.storage.active_attempt(UserId(candidate_id))
                    self.protocol.receive_active(active, now)
                case StartAttempt(interview_id):
                    await self._start(InterviewId(interview_id), now)
                case AttachAttempt(takeover, lease):
                    await self._resume(takeover, lease, now)
                case RestartAttempt(current):
                    await self._restart(current, now)
                case Commit():
                    await self._commit(effect, now)
                case StoreDraft():
                    await self._store_draft(effect, now)
                case RecordAudit(entries):
                    await self._record(entries)
                case _:
                    assert_never(effect)
        except ServerError as exc:
            self.log.warning("storage failed: %s", exc)
            self.protocol.receive_write_failed(frame_message(exc))

    async def _verify(self, token: str) -> None:
        rules = TokenRules.of(self.services.settings)
        try:
            claims = verify_token(rules, token)
        except AuthError as exc:
            self.protocol.receive_unauthenticated(exc.reason)
            return
        user = User(id=claims.sub, name=claims.name, role=claims.role)
        self.protocol.receive_authenticated(user)
        self.log.extra = {"holder": self.holder, "user": claims.sub}

    def _lobby(self) -> Lobby:
        assert self.protocol.user is not None
        return Lobby(self.services, self.protocol.user, self.holder)

    async def _start(self, interview_id: InterviewId, now: Millis) -> None:
        await self._enter(await self._lobby().start(interview_id, now), now)

    async def _resume(self, takeover: bool, lease: str | None, now: Millis) -> None:
        outcome = await self._lobby().resume(now)
        if isinstance(outcome, Refusal):
            self._refuse(outcome)
            return
        current = None
        if lease is not None:  # the epoch matters only to a lease
            current = await self._attachment(outcome.session_id)
        how = admission.decide_attach(
            takeover=takeover, lease=lease, key=self.lease_key, current=current
        )
        await self._attach(outcome, now, how=how)

    async def _restart(self, current: Attempt | None, now: Millis) -> None:
        outcome = await self._lobby().restart(current, now, self._superseded)
        if outcome is admission.NO_ACTIVE and current is not None:
            await self._refresh(current.session_id, now)  # it ended meanwhile
        await self._enter(outcome, now)

    async def _enter(self, outcome: Attempt | Refusal, now: Millis) -> None:
        if isinstance(outcome, Refusal):
            self._refuse(outcome)
        else:
            await self._attach(outcome, now)

    async def _refresh(self, session_id: SessionId, now: Millis) -> None:
        fresh = await self.storage.load_attempt(session_id)
        self.protocol.receive_changed(fresh, now)

    def _refuse(self, refusal: Refusal) -> None:
        self.protocol.receive_refused(
            refusal.code,
            refusal.message,
            opens_at=refusal.opens_at,
            closes_at=refusal.closes_at,
        )

    # -- attaching ----------------------------------------------------------------

    async def _attachment(self, session_id: SessionId) -> leases.Attachment | None:
        """The attempt's last attach, by this candidate (what a valid lease names)."""
        epoch = await self.storage.owner_epoch(session_id)
        user = self.protocol.user
        if epoch is None or user is None:
            return None
        return leases.Attachment(session_id, epoch, user.id)

    async def _attach(
        self, attempt: Attempt, now: Millis, *, how: Attach = Attach.FREE
    ) -> None:
        attached = self.protocol.attempt
        if attached is not None and attached.session_id == attempt.session_id:
            self.protocol.receive_attached(attempt, now, lease=self.protocol.lease)
            return
        acquired = await self.services.lock.acquire(
            attempt.session_id,
            self.holder,
            takeover=how is not Attach.FREE,
            on_superseded=self._superseded,
        )
        if acquired is Acquired.LOCKED:
            self._refuse(admission.LOCKED)
            return
        try:
            await self._take(attempt, now, acquired, how)
        except ServerError:
            # Not attached after all: let the lock go, or it outlives this socket and
            # the candidate's next socket finds their own attempt locked.
            await self._release()
            await self.services.lock.release(attempt.session_id, self.holder)
            raise

    async def _take(
        self, attempt: Attempt, now: Millis, acquired: Acquired, how: Attach
    ) -> None:
        """Attach to ``attempt``, whose lock this connection now holds."""
        await self._release()
        entry = self._attach_entry(acquired, how, now)
        # The claim (the new fence) and its audit entry, in one shared transaction.
        self.fence = fence = await self.storage.attach(attempt, entry)
        self.services.metrics.attached.inc()
        self.subscription = self.services.bus.subscribe(
            attempt.session_id, self._on_bus
        )
        fresh = await self.storage.load_attempt(attempt.session_id) or attempt
        assert self.protocol.user is not None  # attaching needs a candidate
        attachment = leases.Attachment(attempt.session_id, fence, self.protocol.user.id)
        lease = leases.issue(self.lease_key, attachment)
        self.protocol.receive_attached(fresh, now, lease=lease)
        self.log.info("attached to session %s", attempt.session_id)

    def _attach_entry(self, acquired: Acquired, how: Attach, now: Millis) -> AuditEntry:
        actor = self.protocol.actor
        taken_over = acquired is Acquired.TAKEN_OVER
        if how is Attach.REATTACH:
            return audit.reattached(actor, now, taken_over=taken_over)
        return audit.attached(actor, now, taken_over=taken_over)

    async def _release(self) -> None:
        """Give up the attempt this connection holds, if any."""
        attempt = self.protocol.attempt
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self._cancel_timer()
        if attempt is not None:
            await self.services.lock.release(attempt.session_id, self.holder)
        if self.fence is not None:
            self.services.metrics.attached.dec()
        self.fence = None

    async def _detach(self) -> None:
        attempt = self.protocol.attempt
        await self._release()
        if attempt is None:
            return
        with contextlib.suppress(ServerError):
            protocol = self.protocol
            unrecorded = protocol.take_unrecorded_signals()
            entry = audit.detached(
                protocol.actor, self.clock(), self.close_code, unrecorded
            )
            await self.storage.append_audit(
                attempt.session_id, [entry], interview_id=attempt.interview_id
            )

    # -- guarded writes -----------------------------------------------------------

    async def _commit(self, effect: Commit, now: Millis) -> None:
        session_id = effect.change.before.session_id
        try:
            await self.storage.commit(
                effect.change, fence=self.fence, audit=effect.audit, now=now
            )
        except Conflict:
            await self._conflict(session_id, now)
            return
        self.protocol.receive_persisted(now)
        self._reschedule()
        # The ack goes now: the news and the grading job below are best effort and
        # found again later (a lost job is re-enqueued), so the candidate need not
        # wait for two Redis round trips.
        self._flush()
        await self.services.bus.publish(session_id, self.holder)
        indexes = [answer.question_index for answer in effect.change.answers]
        self.services.metrics.answers.inc(len(indexes))
        await self.services.grading.answers_recorded(session_id, indexes)

    async def _store_draft(self, effect: StoreDraft, now: Millis) -> None:
        attempt = self.protocol.attempt
        assert attempt is not None
        try:
            await self.storage.save_draft(
                attempt.session_id, effect.draft, fence=self.fence
            )
        except Conflict:
            await self._conflict(attempt.session_id, now)
            return
        self.protocol.receive_persisted(now)

    async def _conflict(self, session_id: SessionId, now: Millis) -> None:
        """A guarded write lost: superseded, or the attempt moved on elsewhere."""
        self.races += 1
        self.services.metrics.conflicts.inc()
        if not await self.services.lock.holds(session_id, self.holder):
            self.protocol.receive_write_failed("this connection was taken over")
            self.protocol.supersede()
            return
        if self.races > MAX_RACES:
            self.protocol.receive_write_failed("the attempt keeps changing; try again")
            return
        fresh = await self.storage.load_attempt(session_id)
        self.protocol.receive_conflict(fresh, now)

    async def _record(self, entries: tuple[AuditEntry, ...]) -> None:
        attempt = self.protocol.attempt
        if attempt is not None:
            await self.storage.append_audit(
                attempt.session_id, entries, interview_id=attempt.interview_id
            )

    # -- callbacks from the scheduler and the bus (never block) -------------------

    def _superseded(self) -> None:
        self.inbox.put_nowait(_SUPERSEDED)

    def _on_bus(self, origin: str) -> None:
        attempt = self.protocol.attempt
        if origin != self.holder and attempt is not None:
            self.inbox.put_nowait(_Changed(attempt.session_id))

    # -- the timer: the protocol's wakeups on the shared scheduler ------------------

    def _reschedule(self) -> None:
        """Follow the protocol's next wakeup, if it moved (after every step)."""
        now = self.clock()
        wakeup = self.protocol.next_wakeup(now)
        due_at = self.due_at
        if wakeup == due_at:
            return
        if wakeup is None:
            self._cancel_timer()
        elif due_at is None or due_at > now:
            self.services.scheduler.schedule(self)  # calls next_due
        # else the entry is due now: on_due runs soon and follows the protocol

    def _cancel_timer(self) -> None:
        self.services.scheduler.cancel(self)
        self.due_at = None

    def next_due(self, now: Millis) -> Millis | None:
        self.due_at = self.protocol.next_wakeup(now)
        return self.due_at

    def on_due(self, now: Millis) -> None:
        """Runs in the scheduler's task: never changes the attempt, never blocks."""
        self.due_at = None
        protocol = self.protocol
        if protocol.expiry_due(now):
            self.generation += 1  # the handler reschedules after the expiry
            self.inbox.put_nowait(_WAKE)
            return
        protocol.receive_timer(now)  # a tick: only reads the attempt
        if not self._send_queued():
            self.inbox.put_nowait(_TOO_SLOW)
