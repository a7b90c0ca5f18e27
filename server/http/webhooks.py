"""Webhook endpoints of an organisation, their deliveries and redelivery (PRODUCT.md
section 3; Standard Webhooks).

Recruiters and admins of the organisation only; another organisation's endpoint is
404, like a missing one. The secret (``whsec_...``) is in the answer to a creation
and to a rotation, never again. A URL must be ``http(s)`` and resolve to public
addresses only (unless ``WEBHOOK_ALLOW_PRIVATE``); it is checked again before every
attempt. Request and response bodies are the pydantic models below, and
:data:`ROUTES` says which route takes and answers which.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol.webhooks.address import target
from protocol.webhooks.events import EventType
from protocol.webhooks.schedule import DeliveryStatus
from protocol.webhooks.signature import SECRET_BYTES, format_secret
from server.auth import Claims
from server.errors import AddressRefused, Conflict, ServerError
from server.http.access import (
    json_body,
    org,
    parsed_query,
    path_id,
    problems,
    services,
    staff,
)
from server.http.errors import ApiError
from server.http.openapi import Access, ErrorBody, Operation, Reply
from server.storage.webhooks import (
    DELIVERY_PAGE,
    MAX_DELIVERY_PAGE,
    AttemptRecord,
    DeliveryRecord,
    EndpointChanges,
    EndpointRecord,
    WebhookStore,
)
from server.webhooks.resolver import checked_target

MAX_GRACE_S = 7 * 24 * 3600
M = TypeVar("M", bound=BaseModel)

# -- bodies ---------------------------------------------------------------------------

_Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
_Description = Annotated[str, StringConstraints(max_length=500)]
_EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=16)]


def _valid_url(url: str) -> str:
    target(url)  # its ValueError is the field's error
    return url


class WebhookCreate(BaseModel):
    """``POST /api/webhooks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: _Url
    event_types: _EventTypes
    description: _Description = ""
    enabled: StrictBool = True

    _url = field_validator("url")(_valid_url)


class WebhookUpdate(BaseModel):
    """``PATCH /api/webhooks/{webhook_id}``: the fields given change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: _Url | None = None
    event_types: _EventTypes | None = None
    description: _Description | None = None
    enabled: StrictBool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _valid_url(url)


class SecretRotation(BaseModel):
    """``POST /api/webhooks/{webhook_id}/rotate`` (the body may be omitted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_s: Annotated[int, Field(ge=0, le=MAX_GRACE_S, strict=True)] | None = None
    """How long the replaced secret keeps signing (default
    ``WEBHOOK_ROTATION_GRACE_S``)."""


class Webhook(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[EventType]
    enabled: bool
    disabled_reason: str | None
    """``gone`` when the server disabled it after a ``410 Gone``."""
    previous_secret_until: int | None
    """Until then the replaced secret signs beside the current one."""
    created_by: str
    created_at: int
    updated_at: int


class WebhookWithSecret(Webhook):
    secret: str
    """``whsec_`` + base64: shown only in this answer."""


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class Delivery(BaseModel):
    id: str
    event_id: str
    """The message's ``webhook-id``."""
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: int | None
    last_attempt_at: int | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: int | None
    created_at: int


class DeliveryQuery(BaseModel):
    """``GET /api/webhooks/{webhook_id}/deliveries``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    after: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    """A cursor from ``next``: the page after it."""
    limit: Annotated[int, Field(ge=1)] = DELIVERY_PAGE
    """Deliveries per page, 1 up; above ``MAX_DELIVERY_PAGE`` (200) is 200."""
    status: DeliveryStatus | None = None


class DeliveryPage(BaseModel):
    webhook_id: str
    deliveries: list[Delivery]
    next: str | None
    """The cursor of the next (older) page: pass it as ``after``."""


class Attempt(BaseModel):
    number: int
    at: int
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None
    signatures: int
    next_attempt_at: int | None


class DeliveryDetail(Delivery):
    log: list[Attempt]
    """Its latest attempts, newest first."""


# -- handlers -------------------------------------------------------------------------


def _store(request: Request) -> WebhookStore:
    store = services(request).webhooks
    if store is None:
        raise ServerError("webhooks are not wired into this app")
    return store


def _webhook(record: EndpointRecord) -> Webhook:
    return Webhook(
        id=record.id,
        url=record.url,
        description=record.description,
        event_types=list(record.event_types),
        enabled=record.enabled,
        disabled_reason=record.disabled_reason,
        previous_secret_until=record.secrets.previous_until,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _with_secret(record: EndpointRecord) -> WebhookWithSecret:
    return WebhookWithSecret(
        **_webhook(record).model_dump(), secret=record.secrets.current
    )


def _delivery(record: DeliveryRecord) -> Delivery:
    return Delivery(
        id=record.id,
        event_id=record.event_id,
        event_type=record.event_type,
        status=record.status,
        attempts=record.attempts,
        next_attempt_at=record.next_attempt_at,
        last_attempt_at=record.last_attempt_at,
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        delivered_at=record.delivered_at,
        created_at=record.created_at,
    )


def _attempt(record: AttemptRecord) -> Attempt:
    return Attempt(
        number=record.number,
        at=record.at,
        status_code=record.status_code,
        duration_ms=record.duration_ms,
        error=record.error,
        response_excerpt=record.response_excerpt,
        signatures=record.signatures,
        next_attempt_at=record.next_attempt_at,
    )


def _json(model: BaseModel, status_code: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status_code)


async def _body(request: Request, model: type[M], what: str) -> M:
    body = await json_body(request)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        message = f"the {what} is not valid"
        raise ApiError(422, "invalid_request", message, problems=problems(exc)) from exc


async def _reachable(request: Request, url: str) -> None:
    """422 at ``url`` unless the server may call it (SSRF)."""
    allow = services(request).settings.webhook_allow_private
    try:
        await checked_target(url, allow_private=allow)
    except AddressRefused as exc:
        refusal = [{"path": "url", "message": str(exc)}]
        message = "the webhook URL may not be called"
        raise ApiError(422, "invalid_request", message, problems=refusal) from exc


def _has_body(request: Request) -> bool:
    # From the headers: reading the body to find out would skip json_body's bound.
    headers = request.headers
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _new_secret() -> str:
    return format_secret(secrets.token_bytes(SECRET_BYTES))


async def _own(request: Request, claims: Claims) -> EndpointRecord:
    webhook_id = path_id(request, "webhook_id")
    record = await _store(request).get_endpoint(org(claims), webhook_id)
    if record is None:
        raise ApiError(404, "not_found", f"no webhook {webhook_id!r}")
    return record


def _missing(record: object, webhook_id: str) -> None:
    if record is None:  # deleted meanwhile
        raise ApiError(404, "not_found", f"no webhook {webhook_id!r}")


async def create_webhook(request: Request) -> Response:
    """Create an endpoint; the answer holds its secret (the only time)."""
    claims = staff(request)
    body = await _body(request, WebhookCreate, "webhook")
    await _reachable(request, body.url)
    shared = services(request)
    record = await _store(request).create_endpoint(
        org=org(claims),
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=body.enabled,
        secret=_new_secret(),
        by=f"{claims.role}:{claims.sub}",
        now=shared.clock(),
        limit=shared.settings.webhook_max_endpoints,
    )
    response = _json(_with_secret(record), 201)
    response.headers["Location"] = f"/api/webhooks/{record.id}"
    return response


async def list_webhooks(request: Request) -> Response:
    """The organisation's endpoints, oldest first (without secrets)."""
    claims = staff(request)
    records = await _store(request).list_endpoints(org(claims))
    return _json(WebhookList(webhooks=[_webhook(record) for record in records]))


async def get_webhook(request: Request) -> Response:
    return _json(_webhook(await _own(request, staff(request))))


async def update_webhook(request: Request) -> Response:
    """Change the URL, the event types, the description or whether it is enabled
    (enabling clears ``disabled_reason``)."""
    claims = staff(request)
    record = await _own(request, claims)
    body = await _body(request, WebhookUpdate, "webhook update")
    if body.url is not None:
        await _reachable(request, body.url)
    changes = EndpointChanges(
        url=body.url,
        description=body.description,
        event_types=None if body.event_types is None else tuple(body.event_types),
        enabled=body.enabled,
    )
    shared = services(request)
    updated = await _store(request).update_endpoint(
        org(claims), record.id, changes, shared.clock()
    )
    _missing(updated, record.id)
    assert updated is not None
    if body.enabled:
        shared.wake_webhooks()  # what waited while it was disabled
    return _json(_webhook(updated))


async def delete_webhook(request: Request) -> Response:
    """Delete the endpoint, its deliveries and their log."""
    claims = staff(request)
    record = await _own(request, claims)
    await _store(request).delete_endpoint(org(claims), record.id)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    """A new secret; the replaced one keeps signing beside it for ``grace_s``
    (so both ``v1,`` signatures are sent), then stops."""
    claims = staff(request)
    record = await _own(request, claims)
    rotation = (
        await _body(request, SecretRotation, "rotation")
        if _has_body(request)
        else SecretRotation()
    )
    shared = services(request)
    grace_s = rotation.grace_s
    if grace_s is None:
        grace_s = shared.settings.webhook_rotation_grace_s
    rotated = await _store(request).rotate_secret(
        org(claims),
        record.id,
        _new_secret(),
        now=shared.clock(),
        grace_ms=grace_s * 1000,
    )
    _missing(rotated, record.id)
    assert rotated is not None
    return _json(_with_secret(rotated))


async def list_deliveries(request: Request) -> Response:
    """A page of the endpoint's deliveries, newest first: ``after`` (a cursor from
    ``next``), ``limit`` (default 50, at most 200), ``status``."""
    claims = staff(request)
    webhook_id = path_id(request, "webhook_id")
    query = parsed_query(request, DeliveryQuery)
    try:
        page = await _store(request).deliveries(
            org(claims),
            webhook_id,
            after=query.after or None,
            limit=min(query.limit, MAX_DELIVERY_PAGE),
            status=query.status,
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    if page is None:
        raise ApiError(404, "not_found", f"no webhook {webhook_id!r}")
    deliveries = [_delivery(record) for record in page.deliveries]
    return _json(
        DeliveryPage(webhook_id=webhook_id, deliveries=deliveries, next=page.next)
    )


async def get_delivery(request: Request) -> Response:
    """One delivery with its log of attempts."""
    claims = staff(request)
    found = await _store(request).delivery(org(claims), *_delivery_path(request))
    if found is None:
        raise ApiError(404, "not_found", "no such delivery of this webhook")
    record, attempts = found
    detail = DeliveryDetail(
        **_delivery(record).model_dump(), log=[_attempt(line) for line in attempts]
    )
    return _json(detail)


async def redeliver(request: Request) -> Response:
    """Send a delivery again now, on a fresh retry schedule, whatever its status
    (409 while an attempt is in flight or the endpoint is disabled)."""
    claims = staff(request)
    shared = services(request)
    try:
        record = await _store(request).redeliver(
            org(claims), *_delivery_path(request), now=shared.clock()
        )
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    if record is None:
        raise ApiError(404, "not_found", "no such delivery of this webhook")
    shared.wake_webhooks()
    return _json(_delivery(record), 202)


def _delivery_path(request: Request) -> tuple[str, str]:
    return path_id(request, "webhook_id"), path_id(request, "delivery_id")


# -- routes ---------------------------------------------------------------------------

_HOOKS = "/api/webhooks"
_HOOK = _HOOKS + "/{webhook_id}"
_DELIVERY = _HOOK + "/deliveries/{delivery_id}"
TAG = "webhooks"


def _operation(
    method: str,
    path: str,
    handler: Callable[[Request], Awaitable[Response]],
    *replies: Reply,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body_required: bool = True,
) -> Operation:
    summary = (handler.__doc__ or handler.__name__).split("\n\n")[0]
    return Operation(
        method,
        path,
        handler,
        " ".join(summary.split()),
        Access.STAFF,
        replies,
        TAG,
        body=body,
        query=query,
        body_required=body_required,
    )


def webhook_operations() -> list[Operation]:
    """Every webhook route, with its request and response bodies."""
    conflict = Reply(
        409, "An attempt is in flight, or the endpoint is disabled", ErrorBody
    )
    return [
        _operation(
            "POST",
            _HOOKS,
            create_webhook,
            Reply(201, "Created, with its secret", WebhookWithSecret),
            Reply(409, "The organisation has its most endpoints", ErrorBody),
            body=WebhookCreate,
        ),
        _operation("GET", _HOOKS, list_webhooks, Reply(200, "Endpoints", WebhookList)),
        _operation("GET", _HOOK, get_webhook, Reply(200, "The endpoint", Webhook)),
        _operation(
            "PATCH",
            _HOOK,
            update_webhook,
            Reply(200, "The endpoint", Webhook),
            body=WebhookUpdate,
        ),
        _operation("DELETE", _HOOK, delete_webhook, Reply(204, "Deleted")),
        _operation(
            "POST",
            _HOOK + "/rotate",
            rotate_secret,
            Reply(200, "The endpoint, with its new secret", WebhookWithSecret),
            body=SecretRotation,
            body_required=False,
        ),
        _operation(
            "GET",
            _HOOK + "/deliveries",
            list_deliveries,
            Reply(200, "A page, newest first", DeliveryPage),
            query=DeliveryQuery,
        ),
        _operation(
            "GET", _DELIVERY, get_delivery, Reply(200, "The delivery", DeliveryDetail)
        ),
        _operation(
            "POST",
            _DELIVERY + "/redeliver",
            redeliver,
            Reply(202, "Queued again", Delivery),
            conflict,
        ),
    ]
