"""One candidate connection as a sans-I/O state machine (PROTOCOL.md section 1).

The shell feeds input with ``receive_*`` methods and server-side events with verbs
(:meth:`expire`, :meth:`supersede`), always passing the server time. It then drains
:meth:`effects` (work that needs I/O) and :meth:`messages_to_send` (text frames), and
closes the socket when :attr:`close_code` is set, after sending what was queued.

The machine owns its timer: after each step the shell asks :meth:`next_wakeup` when
to call :meth:`receive_timer` next (the earlier of the next ``tick``, aligned to the
question's deadline, and the question's expiry). A wakeup queues a ``tick`` frame,
which only reads the attempt, or expires what is due, which changes it: when
:meth:`expiry_due` says so, the shell makes the call from the task that owns the
connection. The ``auth`` deadline has its own call, :meth:`receive_timeout`.

Replies that depend on a write (an ``answer_ack``, a ``draft_ack``, ``time_expired``)
are held back until the shell reports the write with :meth:`receive_persisted`. When
the write lost a race (:meth:`receive_conflict`), the machine adopts the fresh attempt
and decides again, so nothing is acknowledged that is not stored.

Transitions of :class:`Phase` (only this module assigns it)::

    AUTHENTICATING -> READY      receive_active, after receive_authenticated (a
                                 candidate token)
    AUTHENTICATING -> CLOSED     bad or missing token, wrong role, auth timeout
    READY          -> ATTACHED   receive_attached (with the attachment's lease, which
                                 every ``state`` carries)
    ATTACHED       -> READY      the attempt was abandoned elsewhere
    any            -> CLOSED     completed, superseded, flooding, shell shutdown
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocol import frames
from protocol.attempt import (
    Answer,
    Attempt,
    DraftVerdict,
    Verdict,
    change_between,
    save_draft,
    submit,
)
from protocol.audit import (
    AuditEntry,
    AuditKind,
    candidate as candidate_actor,
    completed as completed_entry,
    expired as expiry_entry,
    late_answer,
)
from protocol.effects import (
    AttachAttempt,
    Commit,
    Effect,
    LoadActiveAttempt,
    RecordAudit,
    RestartAttempt,
    StartAttempt,
    StoreDraft,
    VerifyToken,
)
from protocol.errors import CloseCode, ErrorCode, InvalidMessage, InvalidState
from protocol.expiry import expire, expiry_audit
from protocol.ids import Millis
from protocol.messages import (
    AnswerAck,
    Auth,
    ClientFrame,
    DraftAck,
    Error,
    Hello,
    Ping,
    Pong,
    Restart,
    Resume,
    SaveDraft,
    Signal,
    Start,
    SubmitAnswer,
    Superseded,
    User,
    parse_client_message,
    serialize,
)
from protocol.ratelimit import FloodDetector, SignalLimiter, TokenBucket

__all__ = [
    "AttachAttempt",
    "CandidateProtocol",
    "Commit",
    "Effect",
    "LoadActiveAttempt",
    "Phase",
    "RecordAudit",
    "RestartAttempt",
    "StartAttempt",
    "StoreDraft",
    "VerifyToken",
]


class Phase(enum.Enum):
    AUTHENTICATING = "authenticating"
    READY = "ready"
    ATTACHED = "attached"
    CLOSED = "closed"


@dataclass(slots=True)
class _PendingWrite:
    """A guarded write in flight, the replies it unlocks, and how to decide again."""

    after: Attempt
    replies: list[str]
    frame: ClientFrame | None
    completes: bool = False
    extra: list[str] = field(default_factory=list)
    replay: bool = False


class CandidateProtocol:
    """The candidate side of one WebSocket connection.

    Args:
        now: when the connection opened; the ``auth`` frame is due by
            ``now + auth_timeout_ms``.
        tick_interval_ms: the ``tick`` period, reported in ``hello``.
        signal_burst: signals stored one audit entry each in a burst, refilling at
            ``signals_per_s``; the rest are counted (:class:`SignalLimiter`).
    """

    def __init__(
        self,
        *,
        now: Millis,
        tick_interval_ms: Millis = 1000,
        auth_timeout_ms: Millis = 10_000,
        max_answer_chars: int = 100_000,
        rate_per_s: float = 20.0,
        rate_burst: int = 50,
        flood_close_ms: Millis = 5000,
        bad_frame_burst: int = 20,
        bad_frames_per_s: float = 1.0,
        signal_burst: int = 20,
        signals_per_s: float = 0.2,
    ) -> None:
        self.phase = Phase.AUTHENTICATING
        self.auth_deadline = now + auth_timeout_ms
        self.tick_interval_ms = tick_interval_ms
        self.max_answer_chars = max_answer_chars
        self.user: User | None = None
        self.attempt: Attempt | None = None
        self.lease = ""
        """The lease of the last attach (:mod:`protocol.lease`), sent in ``state``."""
        self.close_code: int | None = None
        self.close_reason = ""
        self.failure: InvalidMessage | None = None
        self._frames = TokenBucket(rate_per_s=rate_per_s, burst=rate_burst, now=now)
        self._bad = TokenBucket(
            rate_per_s=bad_frames_per_s, burst=bad_frame_burst, now=now
        )
        self._flood = FloodDetector(close_after_ms=flood_close_ms)
        self._signals = SignalLimiter(
            burst=signal_burst, rate_per_s=signals_per_s, now=now
        )
        self._messages: list[str] = []
        self._effects: list[Effect] = []
        self._pending: _PendingWrite | None = None

    # -- output -------------------------------------------------------------------

    def messages_to_send(self) -> list[str]:
        """Text frames queued since the last call, in order."""
        messages, self._messages = self._messages, []
        return messages

    def effects(self) -> list[Effect]:
        """Effects queued since the last call; the shell performs them in order."""
        effects, self._effects = self._effects, []
        return effects

    def take_unrecorded_signals(self) -> dict[str, int]:
        """Signals counted, not stored, since the last stored one, by kind (for the
        ``detached`` entry); resets the counts."""
        return self._signals.take_unrecorded()

    @property
    def actor(self) -> str:
        return candidate_actor(self.user.id if self.user else "?")

    @property
    def busy(self) -> bool:
        """A guarded write is in flight: the shell must report it before more input."""
        return self._pending is not None

    # -- input from the client ----------------------------------------------------

    def receive_text(self, text: str, now: Millis) -> None:
        """Handle one text frame from the client."""
        if self.phase is Phase.CLOSED:
            return
        if self._pending is not None:
            raise InvalidState("a guarded write is in flight; report it first")
        if not self._frames.take(now):
            self._drop_over_limit(now)
            return
        try:
            frame = parse_client_message(text)
        except InvalidMessage as exc:
            self._bad_frame(exc, now)
            return
        self._dispatch(frame, now)

    def receive_binary(self, now: Millis) -> None:
        """A binary frame: the protocol is text only."""
        self.receive_text("", now)

    def receive_timeout(self, now: Millis) -> None:
        """The shell's timer fired: close if ``auth`` did not arrive in time."""
        if self.phase is Phase.AUTHENTICATING and now >= self.auth_deadline:
            self._close(CloseCode.UNAUTHENTICATED, "authentication timed out")

    def _drop_over_limit(self, now: Millis) -> None:
        if self._flood.record_drop(now):
            self._close(CloseCode.FLOODING, "too many frames")
        else:
            self._error(ErrorCode.RATE_LIMITED, "too many frames; slow down")

    def _bad_frame(self, exc: InvalidMessage, now: Millis) -> None:
        self.failure = exc
        if self.phase is Phase.AUTHENTICATING:
            self._unauthenticated("expected an auth frame first")
        elif not self._bad.take(now):
            self._close(CloseCode.FLOODING, "too many bad frames")
        else:
            self._error(ErrorCode.BAD_FRAME, exc.reason, exc.ref)

    def _dispatch(self, frame: ClientFrame, now: Millis) -> None:
        if self.phase is Phase.AUTHENTICATING:
            self._dispatch_unauthenticated(frame)
        elif isinstance(frame, Ping):
            pong = Pong(client_time=frame.client_time, server_time=now)
            self._messages.append(serialize(pong))
        elif isinstance(frame, Auth):
            self._error(ErrorCode.BAD_FRAME, "already authenticated")
        elif self.phase is Phase.READY:
            self._dispatch_ready(frame)
        else:
            self._dispatch_attached(frame, now)

    def _dispatch_unauthenticated(self, frame: ClientFrame) -> None:
        if isinstance(frame, Auth):
            self._effects.append(VerifyToken(frame.token))
        else:
            self._unauthenticated("expected an auth frame first")

    def _dispatch_ready(self, frame: ClientFrame) -> None:
        match frame:
            case Start():
                self._effects.append(StartAttempt(frame.interview_id))
            case Resume():
                self._effects.append(AttachAttempt(frame.takeover, frame.lease))
            case Restart():
                self._effects.append(RestartAttempt(None))
            case _:
                self._error(
                    ErrorCode.NOT_ATTACHED, "start or resume an interview first"
                )

    def _dispatch_attached(self, frame: ClientFrame, now: Millis) -> None:
        attempt = self._attached()
        match frame:
            case SubmitAnswer():
                self._submit(attempt, frame, now)
            case SaveDraft():
                self._save_draft(attempt, frame, now)
            case Signal():
                self._signal(frame, now)
            case Start():
                message = "an attempt is in progress: resume it"
                self._error(ErrorCode.ALREADY_IN_PROGRESS, message)
            case Resume():
                self._messages.append(self._state(attempt, now))
            case Restart():
                self._effects.append(RestartAttempt(attempt))
            case _:  # pragma: no cover - Auth and Ping are handled by _dispatch
                raise InvalidState(f"unexpected frame {frame.type}")

    # -- answers and drafts -------------------------------------------------------

    def _submit(self, attempt: Attempt, frame: SubmitAnswer, now: Millis) -> None:
        if len(frame.answer) > self.max_answer_chars:
            message = f"an answer holds at most {self.max_answer_chars} characters"
            self._error(ErrorCode.ANSWER_TOO_LONG, message, frame.ref)
            return
        outcome = submit(attempt, frame.question_index, frame.answer, now)
        replies = [frames.time_expired(answer) for answer in outcome.expired]
        audit = [expiry_entry(answer) for answer in outcome.expired]
        match outcome.verdict:
            case Verdict.ACCEPTED | Verdict.DUPLICATE:
                assert outcome.answer is not None
                replies.append(self._ack(frame, outcome.answer, outcome.verdict))
                if outcome.verdict is Verdict.ACCEPTED:
                    data = {
                        "question_index": frame.question_index,
                        "time_taken_ms": outcome.answer.time_taken_ms,
                    }
                    audit.append(self._entry(AuditKind.ANSWER_ACCEPTED, now, data))
            case Verdict.TOO_LATE:
                audit.append(self._late_answer(frame, now))
                message = "the time for this question is over"
                replies.append(self._error_text(ErrorCode.TOO_LATE, message, frame.ref))
            case _:  # Verdict.INVALID_QUESTION_INDEX
                message = f"question {frame.question_index} is not the current question"
                code = ErrorCode.INVALID_QUESTION_INDEX
                replies.append(self._error_text(code, message, frame.ref))
        audit.extend(self._completion(outcome.attempt, self.actor, now))
        stale = outcome.verdict in (Verdict.TOO_LATE, Verdict.INVALID_QUESTION_INDEX)
        self._write(attempt, outcome.attempt, replies, audit, frame, now, resend=stale)

    def _ack(self, frame: SubmitAnswer, answer: Answer, verdict: Verdict) -> str:
        status = "accepted" if verdict is Verdict.ACCEPTED else "duplicate"
        ack = AnswerAck(
            ref=frame.ref,
            question_index=answer.question_index,
            status=status,
            time_taken_ms=answer.time_taken_ms,
        )
        return serialize(ack)

    def _late_answer(self, frame: SubmitAnswer, now: Millis) -> AuditEntry:
        # The whole text: the store keeps it within the question's budget.
        return late_answer(self.actor, now, frame.question_index, frame.answer)

    def _signal(self, frame: Signal, now: Millis) -> None:
        if not self._signals.admit(frame.kind, frame.detail, now):
            return
        data: dict[str, object] = {"signal": frame.kind, "detail": frame.detail}
        if unrecorded := self._signals.take_unrecorded():
            data["unrecorded"] = unrecorded
        self._audit(AuditKind.SIGNAL, now, data)

    def _save_draft(self, attempt: Attempt, frame: SaveDraft, now: Millis) -> None:
        if len(frame.answer) > self.max_answer_chars:
            message = f"a draft holds at most {self.max_answer_chars} characters"
            self._error(ErrorCode.ANSWER_TOO_LONG, message)
            return
        outcome = save_draft(attempt, frame.question_index, frame.answer, now)
        replies = [frames.time_expired(answer) for answer in outcome.expired]
        audit = expiry_audit(attempt, outcome.attempt, outcome.expired, now)
        if outcome.verdict is DraftVerdict.SAVED and outcome.expired:
            # The draft names the question that expiry just made current: persist the
            # expiry first, then decide the draft again.
            after = outcome.attempt
            self._write(attempt, after, replies, audit, frame, now, resend=False)
            assert self._pending is not None
            self._pending.replay = True
            return
        if outcome.verdict is DraftVerdict.SAVED:
            assert outcome.attempt.draft is not None
            ack = DraftAck(question_index=frame.question_index, saved_at=now)
            self._pending = _PendingWrite(outcome.attempt, [serialize(ack)], frame)
            self._effects.append(StoreDraft(outcome.attempt.draft))
            return
        if outcome.verdict is DraftVerdict.TOO_LATE:
            replies.append(self._error_text(ErrorCode.TOO_LATE, "time is over"))
        else:
            message = f"question {frame.question_index} is not the current question"
            code = ErrorCode.INVALID_QUESTION_INDEX
            replies.append(self._error_text(code, message))
        self._write(attempt, outcome.attempt, replies, audit, frame, now, resend=True)

    # -- server-side events -------------------------------------------------------

    def expire(self, now: Millis) -> None:
        """The current question's time (and grace) may be over: expire what is due."""
        if self.phase is not Phase.ATTACHED or self._pending is not None:
            return
        attempt = self._attached()
        expiry = expire(attempt, now)
        if expiry.answers:
            replies = [frames.time_expired(answer) for answer in expiry.answers]
            after = expiry.attempt
            self._write(attempt, after, replies, expiry.audit, None, now, resend=False)

    def supersede(self) -> None:
        """Another connection took the attempt over: tell this one, then close 4409."""
        if self.phase is Phase.CLOSED:
            return
        self._messages.append(serialize(Superseded()))
        self._close(CloseCode.SUPERSEDED, "taken over by another connection")

    # -- the timer ----------------------------------------------------------------

    def next_wakeup(self, now: Millis) -> Millis | None:
        """When the shell should next call :meth:`receive_timer`, as seen at ``now``:
        the next ``tick`` (a whole number of tick intervals from the deadline, after
        ``now``) or, if earlier, 1 ms after the question closes. ``None`` unless
        attached to an attempt in progress."""
        attempt = self.attempt
        if (
            self.phase is not Phase.ATTACHED
            or attempt is None
            or not attempt.in_progress
        ):
            return None
        tick = frames.next_tick(attempt.deadline, now, self.tick_interval_ms)
        return min(tick, attempt.closes_at + 1)

    def expiry_due(self, now: Millis) -> bool:
        """Whether :meth:`receive_timer` at ``now`` would expire a question (a change
        of the attempt) rather than queue a ``tick`` (which only reads it)."""
        attempt = self.attempt
        return (
            self.phase is Phase.ATTACHED
            and attempt is not None
            and attempt.in_progress
            and now > attempt.closes_at
        )

    def receive_timer(self, now: Millis) -> None:
        """The shell's timer fired (see :meth:`next_wakeup`).

        Expires what is due (see :meth:`expire`), else queues the ``tick`` frame of
        the attempt in progress. No tick while a guarded write is in flight: the
        question may be about to change.
        """
        attempt = self.attempt
        if self.expiry_due(now):
            self.expire(now)
        elif self.phase is Phase.ATTACHED and attempt is not None and not self.busy:
            # Attached means in progress: finishing closes, abandoning detaches.
            self._messages.append(frames.tick(attempt, now))

    # -- results of effects -------------------------------------------------------

    def receive_authenticated(self, user: User) -> None:
        """The token is valid. Non-candidates are closed with 4403; for a candidate
        the shell is asked for the attempt in progress (:class:`LoadActiveAttempt`).
        """
        if self.phase is Phase.CLOSED:
            return
        if self.phase is not Phase.AUTHENTICATING:
            raise InvalidState(f"cannot authenticate in phase {self.phase.value}")
        if user.role != "candidate":
            self._close(CloseCode.FORBIDDEN, "this socket is for candidates")
            return
        self.user = user
        self._effects.append(LoadActiveAttempt(user.id))

    def receive_active(self, active: Attempt | None, now: Millis) -> None:
        """The candidate's attempt in progress, if any: ``hello`` reports it."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase is not Phase.AUTHENTICATING or self.user is None:
            raise InvalidState(f"unexpected active attempt in phase {self.phase.value}")
        self.phase = Phase.READY
        hello = Hello(
            user=self.user,
            server_time=now,
            tick_interval_ms=self.tick_interval_ms,
            active_session=frames.active_session(active, now),
        )
        self._messages.append(serialize(hello))

    def receive_unauthenticated(self, reason: str) -> None:
        """The token is missing, malformed, badly signed or expired."""
        self._unauthenticated(reason)

    def receive_attached(self, attempt: Attempt, now: Millis, *, lease: str) -> None:
        """The shell attached this connection to ``attempt`` (it holds the lock);
        ``lease`` names this attach (:func:`protocol.lease.issue`)."""
        if self.phase is Phase.AUTHENTICATING or self.phase is Phase.CLOSED:
            raise InvalidState(f"cannot attach in phase {self.phase.value}")
        self.attempt = attempt
        self.lease = lease
        self.phase = Phase.ATTACHED
        self._announce(attempt, now)

    def receive_refused(
        self,
        code: ErrorCode,
        message: str,
        *,
        opens_at: Millis | None = None,
        closes_at: Millis | None = None,
    ) -> None:
        """Starting, resuming or restarting was refused with ``code``; a
        ``not_available`` refusal says when the interview opens or closed."""
        error = Error(
            code=code, message=message, opens_at=opens_at, closes_at=closes_at
        )
        self._messages.append(serialize(error))

    def receive_persisted(self, now: Millis) -> None:
        """The pending guarded write committed: adopt it and release its replies."""
        pending = self._take_pending()
        self.attempt = pending.after
        self._messages.extend(pending.replies)
        if pending.completes:
            self._finish(pending.after)
            return
        self._messages.extend(pending.extra)
        if pending.replay and pending.frame is not None:
            self._dispatch_attached(pending.frame, now)

    def receive_conflict(self, fresh: Attempt | None, now: Millis) -> None:
        """The pending write lost a race; ``fresh`` is the stored attempt now.

        The machine reports what changed meanwhile (expiries, completion) and decides
        the pending frame again against ``fresh``; that may queue a new write.
        """
        pending = self._take_pending()
        if fresh is None or fresh.session_id != self._attached().session_id:
            # The stored attempt vanished: nothing to decide against.
            self._error(ErrorCode.INTERNAL, "this attempt is no longer available")
            self._close(CloseCode.DONE, "attempt unavailable")
            return
        self.receive_changed(fresh, now)
        if pending.frame is not None and self.phase is Phase.ATTACHED:
            self._dispatch_attached(pending.frame, now)
        elif self.phase is Phase.CLOSED and isinstance(pending.frame, SubmitAnswer):
            # The attempt ended meanwhile: the answer came too late, but its text is
            # kept in the audit log, never silently dropped (PROTOCOL.md).
            self._effects.append(RecordAudit((self._late_answer(pending.frame, now),)))

    def receive_write_failed(self, message: str) -> None:
        """The pending write could not be stored: refuse it; nothing is acknowledged.

        The client may send the frame again (the attempt is unchanged).
        """
        pending, self._pending = self._pending, None
        ref = None
        if pending is not None and isinstance(pending.frame, SubmitAnswer):
            ref = pending.frame.ref
        self._error(ErrorCode.INTERNAL, message, ref)

    def receive_changed(self, fresh: Attempt | None, now: Millis) -> None:
        """The stored attempt changed elsewhere (another instance, the sweeper).

        Ignored unless attached to that attempt (news may arrive after detaching).
        """
        before = self.attempt
        if self.phase is not Phase.ATTACHED or before is None:
            return
        if fresh is None or fresh.session_id != before.session_id:
            return
        if fresh.status.value == "abandoned":
            self.attempt = None
            self.phase = Phase.READY
            self._messages.append(self._state(fresh, now))
            return
        new_answers = change_between(before, fresh).answers
        self.attempt = fresh
        for answer in new_answers:
            if answer.time_expired:
                self._messages.append(frames.time_expired(answer))
        if not fresh.in_progress:
            self._finish(fresh)
        elif new_answers:
            self._messages.append(self._state(fresh, now))

    def receive_shutdown(self) -> None:
        """The shell is closing the socket (server restart, client gone)."""
        self.phase = Phase.CLOSED

    # -- helpers ------------------------------------------------------------------

    def _write(
        self,
        before: Attempt,
        after: Attempt,
        replies: list[str],
        audit: Sequence[AuditEntry],
        frame: ClientFrame | None,
        now: Millis,
        *,
        resend: bool,
    ) -> None:
        """Queue the guarded write of ``before -> after`` and its ``audit`` (which
        includes the ``completed`` entry when ``after`` finished); replies wait for it.
        """
        change = change_between(before, after)
        moved = change.advances
        show_state = after.in_progress and (moved or resend)
        extra = [self._state(after, now)] if show_state else []
        if not moved:
            if audit:
                self._effects.append(RecordAudit(tuple(audit)))
            self._messages.extend(replies)
            self._messages.extend(extra)
            return
        self._pending = _PendingWrite(
            after, replies, frame, not after.in_progress, extra
        )
        self._effects.append(Commit(change, tuple(audit)))

    @staticmethod
    def _completion(after: Attempt, actor: str, now: Millis) -> list[AuditEntry]:
        return [] if after.in_progress else [completed_entry(after, actor, now)]

    def _announce(self, attempt: Attempt, now: Millis) -> None:
        if attempt.in_progress:
            self._messages.append(self._state(attempt, now))
        else:
            self._finish(attempt)

    def _state(self, attempt: Attempt, now: Millis) -> str:
        return frames.state(attempt, now, lease=self.lease)

    def _finish(self, attempt: Attempt) -> None:
        self._messages.append(frames.completed(attempt))
        self._close(CloseCode.DONE, "interview completed")

    def _take_pending(self) -> _PendingWrite:
        if self._pending is None:
            raise InvalidState("no guarded write is in flight")
        pending, self._pending = self._pending, None
        return pending

    def _attached(self) -> Attempt:
        if self.attempt is None:
            raise InvalidState("not attached to an attempt")
        return self.attempt

    def _entry(
        self, kind: AuditKind, at: Millis, data: Mapping[str, object] | None = None
    ) -> AuditEntry:
        return AuditEntry(at=at, actor=self.actor, kind=kind, data=data or {})

    def _audit(self, kind: AuditKind, now: Millis, data: Mapping[str, object]) -> None:
        self._effects.append(RecordAudit((self._entry(kind, now, data),)))

    def _error_text(
        self, code: ErrorCode, message: str, ref: str | int | None = None
    ) -> str:
        return serialize(Error(code=code, message=message, ref=ref))

    def _error(
        self, code: ErrorCode, message: str, ref: str | int | None = None
    ) -> None:
        self._messages.append(self._error_text(code, message, ref))

    def _unauthenticated(self, reason: str) -> None:
        self._error(ErrorCode.UNAUTHENTICATED, reason)
        self._close(CloseCode.UNAUTHENTICATED, "unauthenticated")

    def _close(self, code: CloseCode, reason: str) -> None:
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.phase = Phase.CLOSED
