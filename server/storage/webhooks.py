"""Webhook endpoints, their deliveries and the log of attempts (docs/design.md,
"Webhooks").

Beside :mod:`server.storage.attempts` and :mod:`server.storage.results`, on the same
database handle. Deliveries are written by the other stores, in the transactions of
the changes they report (:mod:`server.storage._outbox`); here they are claimed and
their attempts recorded:

* :meth:`WebhookStore.claim` takes due deliveries of enabled endpoints with a lease
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so instances never claim the same row;
  SQLite has one writer). A delivery whose claimer died is due again once its
  lease lapses: nothing is lost across a kill, and a receiver may see a message
  twice (the same ``webhook-id``);
* :meth:`WebhookStore.record` stores attempts many per transaction, each only while
  its claim holds: a late result of a lapsed lease is dropped.

Every endpoint method takes the caller's organisation: another organisation's
endpoint is ``None``, like a missing one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from databases.interfaces import Record

from protocol.ids import Millis
from protocol.webhooks.events import EventType
from protocol.webhooks.schedule import DeliveryStatus, Outcome, Verdict
from protocol.webhooks.signature import Secrets
from server.errors import Conflict, QuotaExceeded
from server.storage.database import Database, translated
from server.storage.tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)

__all__ = [
    "DELIVERY_PAGE",
    "MAX_DELIVERY_PAGE",
    "AttemptRecord",
    "AttemptResult",
    "Claim",
    "DeliveryPage",
    "DeliveryRecord",
    "EndpointChanges",
    "EndpointRecord",
    "WebhookStore",
]

DELIVERY_PAGE = 50
MAX_DELIVERY_PAGE = 200
ATTEMPTS_SHOWN = 100
"""A delivery's detail shows its latest attempts, at most this many."""
GONE = "gone"
"""The ``disabled_reason`` of an endpoint that answered ``410 Gone``."""

_PENDING = DeliveryStatus.PENDING.value


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: str
    org: str
    url: str
    description: str
    event_types: tuple[EventType, ...]
    enabled: bool
    disabled_reason: str | None
    secrets: Secrets = field(repr=False)
    created_by: str
    created_at: Millis
    updated_at: Millis


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """What an update sets; ``None`` keeps the value. Enabling clears
    ``disabled_reason``."""

    url: str | None = None
    description: str | None = None
    event_types: tuple[EventType, ...] | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Millis | None
    last_attempt_at: Millis | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Millis | None
    created_at: Millis


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    at: Millis
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None
    signatures: int
    next_attempt_at: Millis | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: tuple[DeliveryRecord, ...]
    next: str | None
    """The cursor of the following page (older deliveries), ``None`` at the end."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery claimed for one attempt: what the sender needs."""

    delivery_id: str
    lease_token: str
    tries: int
    """Attempts already made in this run (0 for the first)."""
    message_id: str
    body: str
    url: str
    secrets: Secrets = field(repr=False)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt, as the sender saw it, and what it means."""

    claim: Claim
    at: Millis
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None
    signatures: int
    outcome: Outcome


class WebhookStore:
    """Webhook queries; every method may raise :class:`server.errors.Unavailable`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._sqlite = database.is_sqlite

    # -- endpoints --------------------------------------------------------------------

    @translated
    async def create_endpoint(
        self,
        *,
        org: str,
        url: str,
        description: str,
        event_types: Sequence[EventType],
        enabled: bool,
        secret: str,
        by: str,
        now: Millis,
        limit: int,
    ) -> EndpointRecord:
        """Raises: QuotaExceeded: ``org`` has ``limit`` endpoints already."""
        row: dict[str, object] = {
            "id": uuid.uuid4().hex,
            "org": org,
            "url": url,
            "description": description,
            "event_types": _types_json(event_types),
            "enabled": enabled,
            "disabled_reason": None,
            "secret": secret,
            "previous_secret": None,
            "previous_secret_until": None,
            "created_by": by,
            "created_at": now,
            "updated_at": now,
        }
        count = sa.select(sa.func.count()).where(webhook_endpoints.c.org == org)
        async with self.database.transaction() as connection:
            # Counted in the transaction; two instances creating the last ones at
            # once may pass the limit by one each (it bounds, it does not bill).
            if await connection.fetch_val(count) >= limit:
                message = f"organisation {org!r} has {limit} webhook endpoints already"
                raise QuotaExceeded(message, limit="webhook_endpoints")
            await connection.execute(webhook_endpoints.insert().values(row))
        return _endpoint(row)

    @translated
    async def list_endpoints(self, org: str) -> list[EndpointRecord]:
        query = (
            webhook_endpoints.select()
            .where(webhook_endpoints.c.org == org)
            .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        )
        return [_endpoint(row) for row in await self.database.fetch_all(query)]

    @translated
    async def get_endpoint(self, org: str, endpoint_id: str) -> EndpointRecord | None:
        row = await self.database.fetch_one(_own(org, endpoint_id))
        return None if row is None else _endpoint(row)

    @translated
    async def update_endpoint(
        self, org: str, endpoint_id: str, changes: EndpointChanges, now: Millis
    ) -> EndpointRecord | None:
        values: dict[str, object] = {"updated_at": now}
        if changes.url is not None:
            values["url"] = changes.url
        if changes.description is not None:
            values["description"] = changes.description
        if changes.event_types is not None:
            values["event_types"] = _types_json(changes.event_types)
        if changes.enabled is not None:
            values["enabled"] = changes.enabled
            if changes.enabled:
                values["disabled_reason"] = None
        return await self._update(org, endpoint_id, values)

    @translated
    async def rotate_secret(
        self, org: str, endpoint_id: str, secret: str, *, now: Millis, grace_ms: int
    ) -> EndpointRecord | None:
        """``secret`` becomes current; the current one signs beside it for
        ``grace_ms`` (:meth:`Secrets.rotated`)."""
        async with self.database.transaction() as connection:
            row = await connection.fetch_one(_own(org, endpoint_id))
            if row is None:
                return None
            secrets = _secrets(row).rotated(secret, now=now, grace_ms=grace_ms)
            values = {
                "secret": secrets.current,
                "previous_secret": secrets.previous,
                "previous_secret_until": secrets.previous_until,
                "updated_at": now,
            }
            updated = await connection.fetch_one(
                webhook_endpoints.update()
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(values)
                .returning(*webhook_endpoints.c)
            )
        return None if updated is None else _endpoint(updated)

    async def _update(
        self, org: str, endpoint_id: str, values: Mapping[str, object]
    ) -> EndpointRecord | None:
        statement = (
            webhook_endpoints.update()
            .where(
                webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.org == org
            )
            .values(values)
            .returning(*webhook_endpoints.c)
        )
        async with self.database.transaction() as connection:
            row = await connection.fetch_one(statement)
        return None if row is None else _endpoint(row)

    @translated
    async def delete_endpoint(self, org: str, endpoint_id: str) -> bool:
        """Delete the endpoint with its deliveries and their attempts (the events
        stay: other endpoints may have them too)."""
        deliveries = sa.select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.endpoint_id == endpoint_id
        )
        async with self.database.transaction() as connection:
            found = await connection.fetch_one(
                webhook_endpoints.update()
                .where(
                    webhook_endpoints.c.id == endpoint_id,
                    webhook_endpoints.c.org == org,
                )
                .values(enabled=False)
                .returning(webhook_endpoints.c.id)
            )
            if found is None:
                return False
            await connection.execute(
                webhook_attempts.delete().where(
                    webhook_attempts.c.delivery_id.in_(deliveries)
                )
            )
            await connection.execute(
                webhook_deliveries.delete().where(
                    webhook_deliveries.c.endpoint_id == endpoint_id
                )
            )
            await connection.execute(
                webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id)
            )
        return True

    # -- the log ----------------------------------------------------------------------

    @translated
    async def deliveries(
        self,
        org: str,
        endpoint_id: str,
        *,
        after: str | None,
        limit: int,
        status: DeliveryStatus | None = None,
    ) -> DeliveryPage | None:
        """The endpoint's deliveries, newest first, after cursor ``after``; ``None``
        for an unknown endpoint. Raises :class:`ValueError` for a cursor this store
        did not give."""
        start = _cursor(after)
        if await self.database.fetch_one(_own(org, endpoint_id)) is None:
            return None
        query = _DELIVERIES.where(webhook_deliveries.c.endpoint_id == endpoint_id)
        if start is not None:
            query = query.where(webhook_deliveries.c.seq < start)
        if status is not None:
            query = query.where(webhook_deliveries.c.status == status.value)
        query = query.order_by(webhook_deliveries.c.seq.desc()).limit(limit + 1)
        rows = await self.database.fetch_all(query)
        page = rows[:limit]
        following = str(page[-1]["seq"]) if len(rows) > limit else None
        return DeliveryPage(tuple(_delivery(row) for row in page), following)

    @translated
    async def delivery(
        self, org: str, endpoint_id: str, delivery_id: str
    ) -> tuple[DeliveryRecord, tuple[AttemptRecord, ...]] | None:
        """A delivery and its latest attempts (newest first)."""
        row = await self.database.fetch_one(
            _DELIVERIES.where(*_delivery_of(org, endpoint_id, delivery_id))
        )
        if row is None:
            return None
        query = (
            webhook_attempts.select()
            .where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.id.desc())
            .limit(ATTEMPTS_SHOWN)
        )
        attempts = tuple(
            _attempt(line) for line in await self.database.fetch_all(query)
        )
        return _delivery(row), attempts

    @translated
    async def redeliver(
        self, org: str, endpoint_id: str, delivery_id: str, now: Millis
    ) -> DeliveryRecord | None:
        """Send the delivery again from now, on a fresh schedule, whatever its
        status; ``None`` for an unknown one.

        Raises:
            Conflict: an attempt is in flight (its lease holds), or the endpoint is
                disabled (nothing would be sent).
        """
        where = _delivery_of(org, endpoint_id, delivery_id)
        async with self.database.transaction() as connection:
            row = await connection.fetch_one(
                sa.select(
                    webhook_deliveries.c.lease_until, webhook_endpoints.c.enabled
                ).where(*where)
            )
            if row is None:
                return None
            if not row["enabled"]:
                raise Conflict("the endpoint is disabled: enable it first")
            if row["lease_until"] is not None and row["lease_until"] > now:
                raise Conflict("an attempt of this delivery is in flight")
            await connection.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery_id)
                .values(
                    status=_PENDING,
                    tries=0,
                    next_attempt_at=now,
                    lease_until=None,
                    lease_token=None,
                )
            )
            updated = await connection.fetch_one(_DELIVERIES.where(*where))
        assert updated is not None, "held by this transaction"
        return _delivery(updated)

    # -- dispatching ------------------------------------------------------------------

    @translated
    async def claim(self, now: Millis, *, lease_ms: int, limit: int) -> list[Claim]:
        """Claim up to ``limit`` due deliveries of enabled endpoints, oldest due
        first, until ``now + lease_ms``."""
        if limit < 1:
            return []
        due = (
            sa.select(webhook_deliveries.c.seq)
            .select_from(_WITH_ENDPOINT)
            .where(
                webhook_deliveries.c.status == _PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
                sa.or_(
                    webhook_deliveries.c.lease_until.is_(None),
                    webhook_deliveries.c.lease_until <= now,
                ),
                webhook_endpoints.c.enabled.is_(True),
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if not self._sqlite:
            # Rows another instance is claiming are skipped, not waited for.
            due = due.with_for_update(of=webhook_deliveries, skip_locked=True)
        token = uuid.uuid4().hex
        statement = (
            webhook_deliveries.update()
            .where(webhook_deliveries.c.seq.in_(due.scalar_subquery()))
            .values(lease_until=now + lease_ms, lease_token=token)
            .returning(webhook_deliveries.c.seq)
        )
        async with self.database.transaction() as connection:
            claimed = [row["seq"] for row in await connection.fetch_all(statement)]
            if not claimed:
                return []
            rows = await connection.fetch_all(
                sa.select(
                    webhook_deliveries.c.id,
                    webhook_deliveries.c.tries,
                    webhook_deliveries.c.next_attempt_at,
                    webhook_events.c.id.label("message_id"),
                    webhook_events.c.body,
                    webhook_endpoints.c.url,
                    webhook_endpoints.c.secret,
                    webhook_endpoints.c.previous_secret,
                    webhook_endpoints.c.previous_secret_until,
                )
                .select_from(
                    _WITH_ENDPOINT.join(
                        webhook_events,
                        webhook_events.c.id == webhook_deliveries.c.event_id,
                    )
                )
                .where(webhook_deliveries.c.seq.in_(claimed))
                .order_by(webhook_deliveries.c.next_attempt_at)
            )
        return [
            Claim(
                delivery_id=row["id"],
                lease_token=token,
                tries=row["tries"],
                message_id=row["message_id"],
                body=row["body"],
                url=row["url"],
                secrets=_secrets(row),
            )
            for row in rows
        ]

    @translated
    async def record(self, results: Sequence[AttemptResult]) -> list[bool]:
        """Store attempts in one transaction; for each, whether it was stored (its
        claim still held). ``410 Gone`` also disables the endpoint."""
        stored = []
        async with self.database.transaction() as connection:
            for result in results:
                row = await connection.fetch_one(_recorded(result))
                stored.append(row is not None)
                if row is None:
                    continue
                await connection.execute(
                    webhook_attempts.insert().values(
                        delivery_id=result.claim.delivery_id,
                        number=row["attempts"],
                        at=result.at,
                        status_code=result.status_code,
                        duration_ms=result.duration_ms,
                        error=result.error,
                        response_excerpt=result.response_excerpt,
                        signatures=result.signatures,
                        next_attempt_at=result.outcome.next_attempt_at,
                    )
                )
                if result.outcome.verdict is Verdict.GONE:
                    await connection.execute(
                        webhook_endpoints.update()
                        .where(webhook_endpoints.c.id == row["endpoint_id"])
                        .values(
                            enabled=False, disabled_reason=GONE, updated_at=result.at
                        )
                    )
        return stored

    @translated
    async def release(self, claims: Sequence[Claim]) -> None:
        """Give claims back unsent (a stopping dispatcher): due again at once."""
        async with self.database.transaction() as connection:
            for claim in claims:
                await connection.execute(
                    webhook_deliveries.update()
                    .where(*_held(claim))
                    .values(lease_until=None, lease_token=None)
                )


_WITH_ENDPOINT = webhook_deliveries.join(
    webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id
)
_DELIVERIES = sa.select(
    webhook_deliveries, webhook_events.c.type.label("event_type")
).select_from(
    _WITH_ENDPOINT.join(
        webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
    )
)


def _own(org: str, endpoint_id: str) -> sa.Select[tuple[object, ...]]:
    return webhook_endpoints.select().where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.org == org
    )


def _delivery_of(
    org: str, endpoint_id: str, delivery_id: str
) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        webhook_deliveries.c.id == delivery_id,
        webhook_deliveries.c.endpoint_id == endpoint_id,
        # The join itself: a select without a FROM of its own (redeliver's) pairs
        # the delivery with every endpoint of ``org`` otherwise.
        webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id,
        webhook_endpoints.c.org == org,
    )


def _held(claim: Claim) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        webhook_deliveries.c.id == claim.delivery_id,
        webhook_deliveries.c.lease_token == claim.lease_token,
        webhook_deliveries.c.status == _PENDING,
    )


def _recorded(result: AttemptResult) -> sa.UpdateBase:
    outcome = result.outcome
    values: dict[str, object] = {
        "status": outcome.status.value,
        "attempts": webhook_deliveries.c.attempts + 1,
        "tries": webhook_deliveries.c.tries + 1,
        "next_attempt_at": outcome.next_attempt_at,
        "lease_until": None,
        "lease_token": None,
        "last_attempt_at": result.at,
        "last_status_code": result.status_code,
        "last_error": result.error,
    }
    if outcome.verdict is Verdict.DELIVERED:
        values["delivered_at"] = result.at
    return (
        webhook_deliveries.update()
        .where(*_held(result.claim))
        .values(values)
        .returning(webhook_deliveries.c.attempts, webhook_deliveries.c.endpoint_id)
    )


def _types_json(event_types: Sequence[EventType]) -> str:
    return json.dumps(sorted({str(kind) for kind in event_types}))


def _secrets(row: Record | Mapping[str, object]) -> Secrets:
    return Secrets(
        current=str(row["secret"]),
        previous=_text(row["previous_secret"]),
        previous_until=_millis(row["previous_secret_until"]),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _millis(value: object) -> Millis | None:
    return None if value is None else int(str(value))


def _endpoint(row: Record | Mapping[str, object]) -> EndpointRecord:
    return EndpointRecord(
        id=str(row["id"]),
        org=str(row["org"]),
        url=str(row["url"]),
        description=str(row["description"]),
        event_types=tuple(
            EventType(kind) for kind in json.loads(str(row["event_types"]))
        ),
        enabled=bool(row["enabled"]),
        disabled_reason=_text(row["disabled_reason"]),
        secrets=_secrets(row),
        created_by=str(row["created_by"]),
        created_at=int(str(row["created_at"])),
        updated_at=int(str(row["updated_at"])),
    )


def _delivery(row: Record) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
    )


def _attempt(row: Record) -> AttemptRecord:
    return AttemptRecord(
        number=row["number"],
        at=row["at"],
        status_code=row["status_code"],
        duration_ms=row["duration_ms"],
        error=row["error"],
        response_excerpt=row["response_excerpt"],
        signatures=row["signatures"],
        next_attempt_at=row["next_attempt_at"],
    )


def _cursor(after: str | None) -> int | None:
    """A cursor is the ``seq`` of the last delivery of the page before."""
    if after is None:
        return None
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise ValueError(f"expected a delivery cursor, got {after[:40]!r}")
    return int(after)
