"""HTTP routes (PRODUCT.md section 3): the interview API, health, schema and metrics.

Handlers read their dependencies from ``request.app.state``, which ``create_app``
sets: ``settings`` (:class:`Settings`), ``storage`` (:class:`Storage`), ``clock``
(epoch milliseconds), ``broker_ready`` and ``redis_ready`` (async checks, or None)
and optionally ``metrics_registry``. Every error is a JSON object
``{"error": code, "message": ...}``; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from protocol import frames
from protocol.definition import DefinitionError, parse_definition
from protocol.ids import InterviewId, Millis, UserId
from protocol.messages import frame_schemas
from server.auth import AuthError, Claims, Role, TokenRules, bearer_claims
from server.settings import Settings
from server.storage.attempts import (
    InterviewRecord,
    Invitee,
    Storage,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

# A definition may hold 200 questions of 20,000 characters each.
MAX_BODY_BYTES = 8 * 1024 * 1024
READY_TIMEOUT_S = 5.0

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: HTTP status, a stable ``error`` code and a message."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status)


def _json_errors(endpoint: Endpoint) -> Endpoint:
    """Turn every failure of ``endpoint`` into a JSON error answer."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return exc.response()
        except AuthError as exc:
            return ApiError(401, "unauthenticated", exc.reason).response()
        except StorageUnavailable:
            logger.warning("storage unavailable for %s %s", request.method, request.url)
            message = "the database is unavailable, retry later"
            return ApiError(503, "unavailable", message).response()
        except Exception:
            logger.exception("unexpected failure in %s %s", request.method, request.url)
            return ApiError(500, "internal", "internal server error").response()

    return wrapper


# -- dependencies from app.state ------------------------------------------------------


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _now(request: Request) -> Millis:
    clock: Callable[[], Millis] = request.app.state.clock
    return clock()


def _caller(request: Request, *roles: Role) -> Claims:
    claims = bearer_claims(request, TokenRules.of(_settings(request)))
    if claims.role not in roles:
        allowed = " or ".join(roles)
        raise ApiError(403, "forbidden", f"this needs a {allowed} token")
    return claims


def _staff(request: Request) -> Claims:
    return _caller(request, Role.RECRUITER, Role.ADMIN)


async def _own_interview(request: Request, claims: Claims) -> InterviewRecord:
    """The interview of the path, when it belongs to the caller's organisation."""
    interview_id = InterviewId(request.path_params["interview_id"])
    record = await _storage(request).get_interview(interview_id)
    # Another organisation's interview is indistinguishable from a missing one.
    if record is None or record.org != claims.org:
        raise ApiError(404, "not_found", f"no interview {interview_id!r}")
    return record


async def _json_body(request: Request) -> object:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            limit = f"{MAX_BODY_BYTES} bytes"
            raise ApiError(413, "too_large", f"expected a body of at most {limit}")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"expected a JSON body: {exc}") from exc


# -- interviews -----------------------------------------------------------------------


def _summary(record: InterviewRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "title": record.definition.title,
        "question_count": len(record.definition.questions),
        "created_at": record.created_at,
    }


@_json_errors
async def create_interview(request: Request) -> Response:
    claims = _staff(request)
    body = await _json_body(request)
    default_grace_ms = _settings(request).default_grace_ms
    try:
        definition = parse_definition(body).with_default_grace(default_grace_ms)
    except DefinitionError as exc:
        raise ApiError(
            422,
            "invalid_definition",
            "the interview definition is not valid",
            problems=exc.problems,
        ) from exc
    record = await _storage(request).create_interview(
        org=_org(claims),
        created_by=claims.sub,
        definition=definition,
        now=_now(request),
    )
    headers = {"Location": f"/api/interviews/{record.id}"}
    return JSONResponse(_summary(record), status_code=201, headers=headers)


@_json_errors
async def list_interviews(request: Request) -> Response:
    claims = _staff(request)
    records = await _storage(request).list_interviews(_org(claims))
    return JSONResponse({"interviews": [_summary(record) for record in records]})


@_json_errors
async def get_interview(request: Request) -> Response:
    record = await _own_interview(request, _staff(request))
    body = {
        **_summary(record),
        "org": record.org,
        "created_by": record.created_by,
        # Includes answer keys, sample solutions and tests: staff only.
        "definition": record.definition.model_dump(mode="json"),
    }
    return JSONResponse(body)


def _org(claims: Claims) -> str:
    # auth.verify_token refuses staff tokens without an org; this is the type guard.
    if claims.org is None:
        raise ApiError(403, "forbidden", "this needs a token with an 'org' claim")
    return claims.org


# -- invitations ----------------------------------------------------------------------

_Email = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]


class _Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    email: _Email | None = None


class _Invitations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: Annotated[list[_Candidate], Field(min_length=1, max_length=10_000)]


@_json_errors
async def invite(request: Request) -> Response:
    record = await _own_interview(request, _staff(request))
    body = await _json_body(request)
    try:
        invitations = _Invitations.model_validate(body)
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid_request",
            "the invitation list is not valid",
            problems=_problems(exc),
        ) from exc
    # The same candidate listed twice is invited once; the last entry wins.
    by_id = {candidate.id: candidate for candidate in invitations.candidates}
    invitees = [
        Invitee(id=UserId(c.id), name=c.name, email=c.email) for c in by_id.values()
    ]
    await _storage(request).invite(record.id, invitees, _now(request))
    return JSONResponse({"invited": len(invitees)}, status_code=201)


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "path": ".".join(str(part) for part in error["loc"]) or "(root)",
            "message": error["msg"],
        }
        for error in exc.errors()
    ]


# -- candidate ------------------------------------------------------------------------


@_json_errors
async def active(request: Request) -> Response:
    claims = _caller(request, Role.CANDIDATE)
    attempt = await _storage(request).active_attempt(claims.sub)
    now = _now(request)
    session = frames.active_session(attempt, now)
    body = session.model_dump(mode="json") if session else None
    return JSONResponse({"active_session": body, "server_time": now})


# -- operations -----------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@_json_errors
async def readyz(request: Request) -> Response:
    checks = {"database": await _database_ready(request)}
    broker_ready: Callable[[], Awaitable[bool]] | None = getattr(
        request.app.state, "broker_ready", None
    )
    if broker_ready is not None:
        checks["broker"] = await _check(broker_ready(), "broker")
    redis_ready: Callable[[], Awaitable[bool]] | None = getattr(
        request.app.state, "redis_ready", None
    )
    if redis_ready is not None:
        checks["redis"] = await _check(redis_ready(), "redis")
    ready = all(checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: "ok" if ok else "failed" for name, ok in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database_ready(request: Request) -> bool:
    async def ping() -> bool:
        await _storage(request).ping()
        return True

    return await _check(ping(), "database")


async def _check(probe: Awaitable[bool], name: str) -> bool:
    try:
        return await asyncio.wait_for(probe, READY_TIMEOUT_S)
    except Exception as exc:
        # Readiness must answer, whatever the dependency does.
        logger.warning("readiness check %s failed: %r", name, exc)
        return False


@functools.cache
def _schema() -> dict[str, object]:
    return frame_schemas()


async def protocol_schema(request: Request) -> Response:
    return JSONResponse(_schema())


async def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "metrics_registry", None)
    body = generate_latest(REGISTRY if registry is None else registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def routes() -> list[BaseRoute]:
    # Imported here: the results API builds on this module's helpers.
    from server.http.results import results_routes

    return [
        Route("/api/interviews", create_interview, methods=["POST"]),
        Route("/api/interviews", list_interviews, methods=["GET"]),
        # Before /{interview_id}, which would otherwise match "active".
        Route("/api/interviews/active", active, methods=["GET"]),
        Route("/api/interviews/{interview_id}", get_interview, methods=["GET"]),
        Route("/api/interviews/{interview_id}/invitations", invite, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/protocol.schema.json", protocol_schema, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *results_routes(),
    ]
