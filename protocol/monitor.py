"""One recruiter monitor connection as a sans-I/O state machine (PROTOCOL.md 2).

Like :class:`protocol.connection.CandidateProtocol`: the shell feeds input with
``receive_*`` methods, always passing the server time, then drains :meth:`effects`
and :meth:`messages_to_send`, and closes when :attr:`close_code` is set.

Each subscription delivers its interview's events in cursor order, none skipped or
repeated, from two sources the shell merges here: the live events the process hears
(:meth:`receive_event`) and pages read from the log (:class:`ReadEvents`, answered by
:meth:`receive_events`). A subscription starts ``pending`` (live events are kept
until the snapshot), becomes ``live`` at ``cursor`` with its snapshot, and from then
on sends the event after the last one sent whenever it has it; when it does not (a
replay after ``since``, a live event that overtook an earlier one, events it could
not keep), it asks the shell to read the log after the last one sent. Live events
kept while waiting are bounded (``max_waiting``): beyond it they are forgotten and
read from the log instead, so a busy interview costs a slow monitor no memory.

Transitions of :class:`Phase`::

    AUTHENTICATING -> READY      receive_authenticated (a recruiter or an admin)
    AUTHENTICATING -> CLOSED     bad or missing token, wrong role, auth timeout
    any            -> CLOSED     flooding, shell shutdown
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.effects import VerifyToken
from protocol.errors import CloseCode, ErrorCode, InvalidMessage, InvalidState
from protocol.events import Event, recoverable
from protocol.ids import InterviewId, Millis
from protocol.messages import (
    Auth,
    Error,
    EventOut,
    Hello,
    MonitorClientFrame,
    MonitorSession,
    Ping,
    Pong,
    Snapshot,
    Subscribe,
    User,
    parse_monitor_message,
    serialize,
)
from protocol.ratelimit import FloodDetector, TokenBucket

STAFF_ROLES = frozenset({"recruiter", "admin"})


class Phase(enum.Enum):
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


# -- effects: what the monitor asks the shell to do ----------------------------------


@dataclass(frozen=True, slots=True)
class OpenFeed:
    """Check that the caller may watch ``interview_id`` and start hearing its live
    events, then read where its log stands and the snapshot; answer with
    :meth:`MonitorProtocol.receive_snapshot` or
    :meth:`MonitorProtocol.receive_not_found`."""

    interview_id: InterviewId
    since: int | None


@dataclass(frozen=True, slots=True)
class CloseFeed:
    """Stop hearing ``interview_id``'s live events."""

    interview_id: InterviewId


@dataclass(frozen=True, slots=True)
class ReadEvents:
    """Read a page of ``interview_id``'s log after ``after``; answer with
    :meth:`MonitorProtocol.receive_events`."""

    interview_id: InterviewId
    after: int


MonitorEffect = VerifyToken | OpenFeed | CloseFeed | ReadEvents


# -- one subscription ----------------------------------------------------------------


@dataclass(slots=True)
class _Feed:
    since: int | None
    sent: int | None = None
    """The cursor of the last event sent; ``None`` until the snapshot."""
    heard: int = 0
    """The greatest cursor known to exist."""
    waiting: dict[int, Event] = field(default_factory=dict)
    reading: int | None = None
    """While a :class:`ReadEvents` is out: what was heard when it was issued."""
    check: bool = False
    """Events may have been lost unheard: read the log once."""


class MonitorProtocol:
    """The recruiter side of one monitor connection.

    Args:
        now: when the connection opened; ``auth`` is due by ``now + auth_timeout_ms``.
        max_subscriptions: interviews one connection may watch at once.
        max_waiting: live events kept per subscription while it cannot send them.
        page: the most events the shell reads per :class:`ReadEvents`: a full page
            may not be the end of the log, so the next one is read.
    """

    def __init__(
        self,
        *,
        now: Millis,
        tick_interval_ms: Millis = 1000,
        auth_timeout_ms: Millis = 10_000,
        rate_per_s: float = 20.0,
        rate_burst: int = 50,
        flood_close_ms: Millis = 5000,
        bad_frame_burst: int = 20,
        bad_frames_per_s: float = 1.0,
        max_subscriptions: int = 50,
        max_waiting: int = 1000,
        page: int = 200,
    ) -> None:
        self.phase = Phase.AUTHENTICATING
        self.auth_deadline = now + auth_timeout_ms
        self.tick_interval_ms = tick_interval_ms
        self.max_subscriptions = max_subscriptions
        self.max_waiting = max_waiting
        self.page = page
        self.user: User | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._frames = TokenBucket(rate_per_s=rate_per_s, burst=rate_burst, now=now)
        self._bad = TokenBucket(
            rate_per_s=bad_frames_per_s, burst=bad_frame_burst, now=now
        )
        self._flood = FloodDetector(close_after_ms=flood_close_ms)
        self._feeds: dict[InterviewId, _Feed] = {}
        self._messages: list[str] = []
        self._effects: list[MonitorEffect] = []

    # -- output -------------------------------------------------------------------

    def messages_to_send(self) -> list[str]:
        messages, self._messages = self._messages, []
        return messages

    def effects(self) -> list[MonitorEffect]:
        effects, self._effects = self._effects, []
        return effects

    @property
    def subscriptions(self) -> list[InterviewId]:
        return list(self._feeds)

    def last_sent(self, interview_id: InterviewId) -> int | None:
        """The cursor of the last event of ``interview_id`` sent, if live."""
        feed = self._feeds.get(interview_id)
        return None if feed is None else feed.sent

    # -- input from the client ----------------------------------------------------

    def receive_text(self, text: str, now: Millis) -> None:
        if self.phase is Phase.CLOSED:
            return
        if not self._frames.take(now):
            if self._flood.record_drop(now):
                self._close(CloseCode.FLOODING, "too many frames")
            else:
                self._error(ErrorCode.RATE_LIMITED, "too many frames; slow down")
            return
        try:
            frame = parse_monitor_message(text)
        except InvalidMessage as exc:
            self._bad_frame(exc, now)
            return
        self._dispatch(frame, now)

    def receive_binary(self, now: Millis) -> None:
        self.receive_text("", now)

    def receive_timeout(self, now: Millis) -> None:
        if self.phase is Phase.AUTHENTICATING and now >= self.auth_deadline:
            self._close(CloseCode.UNAUTHENTICATED, "authentication timed out")

    def _bad_frame(self, exc: InvalidMessage, now: Millis) -> None:
        if self.phase is Phase.AUTHENTICATING:
            self._unauthenticated("expected an auth frame first")
        elif not self._bad.take(now):
            self._close(CloseCode.FLOODING, "too many bad frames")
        else:
            self._error(ErrorCode.BAD_FRAME, exc.reason, exc.ref)

    def _dispatch(self, frame: MonitorClientFrame, now: Millis) -> None:
        if self.phase is Phase.AUTHENTICATING:
            if isinstance(frame, Auth):
                self._effects.append(VerifyToken(frame.token))
            else:
                self._unauthenticated("expected an auth frame first")
        elif isinstance(frame, Ping):
            pong = Pong(client_time=frame.client_time, server_time=now)
            self._messages.append(serialize(pong))
        elif isinstance(frame, Auth):
            self._error(ErrorCode.BAD_FRAME, "already authenticated")
        elif isinstance(frame, Subscribe):
            self._subscribe(InterviewId(frame.interview_id), frame.since)
        else:
            self._unsubscribe(InterviewId(frame.interview_id))

    def _subscribe(self, interview_id: InterviewId, since: int | None) -> None:
        if interview_id not in self._feeds and (
            len(self._feeds) >= self.max_subscriptions
        ):
            message = f"at most {self.max_subscriptions} subscriptions per connection"
            self._error(ErrorCode.BAD_FRAME, message)
            return
        if interview_id in self._feeds:  # subscribing again starts over
            self._effects.append(CloseFeed(interview_id))
        self._feeds[interview_id] = _Feed(since=since)
        self._effects.append(OpenFeed(interview_id, since))

    def _unsubscribe(self, interview_id: InterviewId) -> None:
        if self._feeds.pop(interview_id, None) is not None:
            self._effects.append(CloseFeed(interview_id))

    # -- results of effects -------------------------------------------------------

    def receive_authenticated(self, user: User, now: Millis) -> None:
        """The token is valid: a recruiter or an admin gets ``hello``; anyone else
        is closed with 4403."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase is not Phase.AUTHENTICATING:
            raise InvalidState(f"cannot authenticate in phase {self.phase.value}")
        if user.role not in STAFF_ROLES:
            self._close(CloseCode.FORBIDDEN, "this socket is for recruiters")
            return
        self.user = user
        self.phase = Phase.READY
        hello = Hello(
            user=user,
            server_time=now,
            tick_interval_ms=self.tick_interval_ms,
            active_session=None,
        )
        self._messages.append(serialize(hello))

    def receive_unauthenticated(self, reason: str) -> None:
        self._unauthenticated(reason)

    def receive_not_found(self, interview_id: InterviewId) -> None:
        """No such interview in the caller's organisation."""
        if self._feeds.pop(interview_id, None) is not None:
            self._effects.append(CloseFeed(interview_id))
            self._error(ErrorCode.NOT_FOUND, f"no interview {interview_id}")

    def receive_snapshot(
        self,
        interview_id: InterviewId,
        sessions: Sequence[MonitorSession],
        *,
        head: int,
        pruned: int,
    ) -> None:
        """Where the log stood (``head``: its last cursor, ``pruned``: the last one
        retention removed) and the attempts, read after the shell began hearing
        live events: send the snapshot, then what follows it."""
        feed = self._feeds.get(interview_id)
        if feed is None or feed.sent is not None:
            return  # unsubscribed meanwhile, or a stale answer
        recovered = recoverable(feed.since, pruned=pruned, head=head)
        cursor = feed.since if recovered and feed.since is not None else head
        snapshot = Snapshot(
            interview_id=interview_id,
            cursor=cursor,
            recovered=recovered,
            sessions=list(sessions),
        )
        self._messages.append(serialize(snapshot))
        feed.sent = cursor
        feed.heard = max(feed.heard, head)
        self._advance(interview_id, feed)

    def receive_event(self, event: Event | None) -> None:
        """A live event of a subscribed interview; ``None``: events of every
        subscription may have been lost (read the log to catch up)."""
        if event is None:
            for interview_id, each in self._feeds.items():
                each.check = True
                if each.sent is not None:
                    self._advance(interview_id, each)
            return
        feed = self._feeds.get(event.interview_id)
        if feed is None:
            return
        feed.heard = max(feed.heard, event.cursor)
        if feed.sent is not None and event.cursor <= feed.sent:
            return
        if len(feed.waiting) < self.max_waiting:
            feed.waiting[event.cursor] = event
        if feed.sent is not None:
            self._advance(event.interview_id, feed)

    def receive_events(
        self, interview_id: InterviewId, events: Sequence[Event]
    ) -> None:
        """A page of the log after the ``after`` of the :class:`ReadEvents`."""
        feed = self._feeds.get(interview_id)
        if feed is None or feed.sent is None:
            return
        expected, feed.reading, feed.check = feed.reading, None, False
        if events:
            gone = events[0].cursor > feed.sent + 1
        else:
            gone = expected is not None and expected > feed.sent
        if gone:
            # Retention removed events this monitor had not been sent (the log
            # starts after them, or ends before what was heard of): start over.
            self._restart(interview_id)
            return
        for event in events:
            if event.cursor == feed.sent + 1:
                self._send(feed, event)
        feed.check = len(events) >= self.page
        self._advance(interview_id, feed)

    def receive_failed(self, interview_id: InterviewId) -> None:
        """Storage failed while serving the subscription: it ends, with an error
        the client may answer by subscribing again (with its last cursor)."""
        if self._feeds.pop(interview_id, None) is not None:
            self._effects.append(CloseFeed(interview_id))
            message = f"could not read the events of {interview_id}; subscribe again"
            self._error(ErrorCode.INTERNAL, message)

    def receive_shutdown(self) -> None:
        self.phase = Phase.CLOSED

    # -- delivering in order ------------------------------------------------------

    def _advance(self, interview_id: InterviewId, feed: _Feed) -> None:
        """Send what follows the last event sent, from what is waiting; read the
        log when something is missing."""
        assert feed.sent is not None
        while (event := feed.waiting.pop(feed.sent + 1, None)) is not None:
            self._send(feed, event)
        for cursor in [c for c in feed.waiting if c <= feed.sent]:
            del feed.waiting[cursor]
        if (feed.heard > feed.sent or feed.check) and feed.reading is None:
            feed.reading = feed.heard
            self._effects.append(ReadEvents(interview_id, feed.sent))

    def _send(self, feed: _Feed, event: Event) -> None:
        frame = EventOut(
            interview_id=event.interview_id,
            cursor=event.cursor,
            session_id=event.session_id,
            kind=event.kind.value,
            at=event.at,
            data=dict(event.data),
        )
        self._messages.append(serialize(frame))
        feed.sent = event.cursor
        feed.waiting.pop(event.cursor, None)

    def _restart(self, interview_id: InterviewId) -> None:
        self._effects.append(CloseFeed(interview_id))
        self._feeds[interview_id] = _Feed(since=None)
        self._effects.append(OpenFeed(interview_id, None))

    # -- helpers ------------------------------------------------------------------

    def _error(
        self, code: ErrorCode, message: str, ref: str | int | None = None
    ) -> None:
        self._messages.append(serialize(Error(code=code, message=message, ref=ref)))

    def _unauthenticated(self, reason: str) -> None:
        self._error(ErrorCode.UNAUTHENTICATED, reason)
        self._close(CloseCode.UNAUTHENTICATED, "unauthenticated")

    def _close(self, code: CloseCode, reason: str) -> None:
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.phase = Phase.CLOSED


def remaining_ms(deadline: Millis | None, now: Millis) -> int | None:
    """Time left on the current question at ``now``: ``None`` without one."""
    return None if deadline is None else max(0, deadline - now)
