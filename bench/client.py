"""One candidate socket of the load generator, and how it attaches to its session."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.auth import issue_token

OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
TOKEN_TTL_S = 6 * 3600


def epoch_ms() -> float:
    """The wall clock in (fractional) epoch milliseconds: the server's clock too."""
    return time.time_ns() / 1_000_000


class AttachError(Exception):
    """Attaching failed; ``reason`` is a short label to count failures by."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def failure_reason(exc: BaseException) -> str:
    """A short, countable label for why a connect or attach failed."""
    if isinstance(exc, AttachError):
        return exc.reason
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 1006}"
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__


class Client:
    """A candidate: its socket, the question it is on, and an answer in flight."""

    __slots__ = (
        "answering",
        "closing",
        "deadline",
        "in_flight_ticks",
        "instance",
        "last_tick",
        "lease",
        "question_count",
        "question_index",
        "reader",
        "segment_from",
        "sent_at",
        "sent_ref",
        "tick_interval_ms",
        "token",
        "user",
        "ws",
    )

    def __init__(self, user: str, secret: str) -> None:
        self.user = user
        self.instance = 0  # which server instance it connects to
        self.token = issue_token(
            secret,
            sub=user,
            role="candidate",
            name=f"Bench {user}",
            ttl_s=TOKEN_TTL_S,
            now_s=time.time(),
        )
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.closing = False
        self.deadline: int | None = None
        self.lease: str | None = None  # of the last state: resume{lease} comes back
        self.segment_from = 0
        self.question_index = 0
        self.question_count = 0
        self.last_tick: tuple[int, int] | None = None
        self.tick_interval_ms: int | None = None
        # An answer sent and not settled yet (settled by the next state or an error).
        self.answering = False
        self.sent_ref: str | None = None
        self.sent_at = 0.0
        # Intended times of the window's ticks received while an answer was in flight.
        self.in_flight_ticks: list[int] = []

    @property
    def attached(self) -> bool:
        return self.ws is not None and not self.closing and self.deadline is not None

    def on_state(self, frame: dict[str, Any]) -> None:
        self.deadline = int(frame["deadline"])
        self.segment_from = int(frame["server_time"])
        self.question_index = int(frame["question_index"])
        self.question_count = int(frame["question_count"])
        lease = frame.get("lease")
        self.lease = lease if isinstance(lease, str) else None
        self.answering = False
        self.sent_ref = None
        self.in_flight_ticks.clear()

    async def attach(
        self,
        url: str,
        interview_id: str,
        *,
        resume: bool,
        compression: str | None,
        lease: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Connect, authenticate and attach: ``(state frame, took over)``.

        ``start`` the interview, or ``resume`` when asked to or when ``hello`` reports
        an attempt in progress; a ``session_locked`` answer (the previous socket of
        this candidate is not released yet) is retried once with a takeover. A
        ``lease`` (of the last ``state``) goes with ``resume``, as clients do after
        losing their connection.

        Raises:
            AttachError, ConnectionClosed, InvalidStatus, OSError, TimeoutError.
        """
        ws = await connect(
            url,
            compression=compression,
            proxy=None,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            # The server pings; answering its pings is enough.
            ping_interval=None,
            user_agent_header="interview-bench",
        )
        try:
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            hello = await _next_frame(ws)
            if hello.get("type") != "hello":
                raise AttachError(f"expected hello, got {_label(hello)}")
            self.tick_interval_ms = int(hello["tick_interval_ms"])
            if resume or hello.get("active_session"):
                resuming: dict[str, object] = {"type": "resume"}
                if lease is not None:
                    resuming["lease"] = lease
                await ws.send(json.dumps(resuming))
            else:
                start = {"type": "start", "interview_id": interview_id}
                await ws.send(json.dumps(start))
            took_over = False
            while True:
                frame = await _next_frame(ws)
                kind = frame.get("type")
                if kind == "state":
                    self.ws = ws
                    self.closing = False
                    self.last_tick = None
                    self.on_state(frame)
                    return frame, took_over
                if kind == "error":
                    if frame.get("code") == "session_locked" and not took_over:
                        took_over = True
                        takeover = {"type": "resume", "takeover": True}
                        await ws.send(json.dumps(takeover))
                        continue
                    raise AttachError(f"error {frame.get('code')}")
                if kind not in ("tick", "draft_ack", "pong"):
                    raise AttachError(f"expected state, got {_label(frame)}")
        except BaseException:
            await _abandon(ws)
            raise

    async def close(self) -> None:
        """Close the socket on purpose (no close code is counted) and wait for its
        reader to end."""
        self.closing = True
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S * 2)
            except (TimeoutError, OSError):
                ws.transport.abort()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
            self.reader = None


async def _next_frame(ws: ClientConnection) -> dict[str, Any]:
    message = await ws.recv()
    frame = json.loads(message)
    if not isinstance(frame, dict):
        raise AttachError("non-object frame")
    return frame


def _label(frame: dict[str, Any]) -> str:
    kind = str(frame.get("type"))
    return f"error {frame.get('code')}" if kind == "error" else kind


async def _abandon(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)
    except Exception:
        ws.transport.abort()
