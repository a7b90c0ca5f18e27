"""The webhook outbox: :func:`record_session_event`, called by the stores inside the
transaction of the change it reports.

The event and its deliveries commit or roll back with that change, so an event is
never sent for a change that did not happen, nor lost for one that did (a crash
after the commit leaves due deliveries, which any dispatcher sends). Nothing is
written when no enabled endpoint of the organisation subscribes to the event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from databases.core import Connection

from protocol.ids import Millis, SessionId
from protocol.webhooks.events import EventType, event_body, message_id
from protocol.webhooks.schedule import DeliveryStatus
from server.storage.tables import (
    interviews,
    sessions,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)

_FACTS = sa.select(
    sessions.c.interview_id,
    sessions.c.candidate_id,
    sessions.c.number,
    interviews.c.org,
).select_from(sessions.join(interviews, interviews.c.id == sessions.c.interview_id))


async def record_session_event(
    connection: Connection,
    event_type: EventType,
    session_id: SessionId,
    *,
    at: Millis,
    data: Mapping[str, object],
) -> int:
    """Queue ``event_type`` about attempt ``session_id`` for every enabled endpoint
    of its organisation that subscribes to it; how many deliveries that made.

    The body's ``data`` is the attempt's ids and number, then ``data``.
    """
    facts = await connection.fetch_one(_FACTS.where(sessions.c.id == session_id))
    if facts is None:
        return 0
    endpoints = await connection.fetch_all(
        sa.select(webhook_endpoints.c.id, webhook_endpoints.c.event_types).where(
            webhook_endpoints.c.org == facts["org"],
            webhook_endpoints.c.enabled.is_(True),
        )
    )
    subscribed = [
        row["id"] for row in endpoints if event_type in json.loads(row["event_types"])
    ]
    if not subscribed:
        return 0
    described = {
        "session_id": session_id,
        "interview_id": facts["interview_id"],
        "candidate_id": facts["candidate_id"],
        "attempt": facts["number"],
        **data,
    }
    event_id = message_id(uuid.uuid4().hex)
    await connection.execute(
        webhook_events.insert().values(
            id=event_id,
            org=facts["org"],
            type=event_type.value,
            session_id=session_id,
            body=event_body(event_type, at, described),
            created_at=at,
        )
    )
    # A row at a time: a single-row statement is compiled once
    # (server/storage/_databases.py).
    for endpoint_id in subscribed:
        await connection.execute(
            webhook_deliveries.insert().values(
                id=uuid.uuid4().hex,
                event_id=event_id,
                endpoint_id=endpoint_id,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                tries=0,
                next_attempt_at=at,
                created_at=at,
            )
        )
    return len(subscribed)
