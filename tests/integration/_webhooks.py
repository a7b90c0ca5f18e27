"""What the webhook tests share: endpoints, completed attempts, a dispatcher on a
fake clock that starts at the wall clock (the reference library refuses timestamps
more than 5 minutes off)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from protocol.attempt import Attempt, begin
from protocol.audit import SERVER, AuditEntry, AuditKind
from protocol.ids import Millis, SessionId, UserId
from protocol.webhooks.events import EventType
from protocol.webhooks.signature import SECRET_BYTES, format_secret
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.webhooks import EndpointRecord, WebhookStore
from server.webhooks.dispatcher import Dispatcher
from server.webhooks.sender import Sender
from tests.e2e._client import UNIT_S
from tests.integration._grading import FakeClock

EVERYTHING = tuple(EventType)


def wall() -> Millis:
    return time.time_ns() // 1_000_000


def make_dispatcher(
    store: WebhookStore,
    clock: FakeClock,
    *,
    allow_private: bool = True,
    timeout_s: float = UNIT_S,
) -> Dispatcher:
    sender = Sender(timeout_s=timeout_s, allow_private=allow_private)
    return Dispatcher(store, sender, clock, jitter=lambda: 0.5)  # no jitter


async def deliver(dispatcher: Dispatcher) -> int:
    """One round: claim what is due, send it, record it; how many were sent."""
    sent = await dispatcher.deliver_due()
    await dispatcher.settle()
    return sent


async def endpoint(
    store: WebhookStore,
    url: str,
    clock: FakeClock,
    *,
    org: str = "acme",
    types: Sequence[EventType] = EVERYTHING,
    enabled: bool = True,
) -> EndpointRecord:
    return await store.create_endpoint(
        org=org,
        url=url,
        description="",
        event_types=types,
        enabled=enabled,
        secret=new_secret(),
        by="recruiter:rita",
        now=clock(),
        limit=50,
    )


def new_secret() -> str:
    return format_secret(uuid.uuid4().bytes + uuid.uuid4().bytes[: SECRET_BYTES - 16])


async def start(
    storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> Attempt:
    attempt = begin(
        session_id=SessionId(uuid.uuid4().hex),
        interview_id=interview.id,
        title=interview.title,
        candidate_id=UserId(f"ada-{uuid.uuid4().hex[:8]}"),
        number=1,
        questions=interview.questions,
        grace_ms=interview.settings.grace_ms,
        now=clock(),
    )
    entry = AuditEntry(clock(), "candidate:ada", AuditKind.STARTED)
    await storage.create_attempt(attempt, candidate_name="Ada", audit=[entry])
    return attempt


async def complete(
    storage: DatabaseStorage, interview: InterviewRecord, clock: FakeClock
) -> SessionId:
    """An attempt whose completion is stored (its COMPLETED audit entry)."""
    attempt = await start(storage, interview, clock)
    done = AuditEntry(clock(), SERVER, AuditKind.COMPLETED)
    await storage.append_audit(attempt.session_id, [done])
    return attempt.session_id
