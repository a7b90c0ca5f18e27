"""The interview API (PRODUCT.md section 3): staff create interviews and invite
candidates; a candidate asks for the attempt in progress."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from protocol import frames
from protocol.definition import DefinitionError, parse_definition
from protocol.ids import UserId
from server.auth import Role
from server.http.access import (
    caller,
    json_body,
    org,
    own_interview,
    problems,
    services,
    staff,
)
from server.http.errors import ApiError
from server.storage.attempts import InterviewRecord, Invitee, Quota


def _summary(record: InterviewRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "title": record.definition.title,
        "question_count": len(record.definition.questions),
        "created_at": record.created_at,
    }


async def create_interview(request: Request) -> Response:
    claims = staff(request)
    body = await json_body(request)
    shared = services(request)
    try:
        definition = parse_definition(body).with_default_grace(
            shared.settings.default_grace_ms
        )
    except DefinitionError as exc:
        raise ApiError(
            422,
            "invalid_definition",
            "the interview definition is not valid",
            problems=exc.problems,
        ) from exc
    record = await shared.storage.create_interview(
        org=org(claims),
        created_by=claims.sub,
        definition=definition,
        now=shared.clock(),
        quota=Quota(
            interviews=shared.settings.org_max_interviews,
            definition_bytes=shared.settings.org_max_definition_bytes,
        ),
    )
    headers = {"Location": f"/api/interviews/{record.id}"}
    return JSONResponse(_summary(record), status_code=201, headers=headers)


async def list_interviews(request: Request) -> Response:
    claims = staff(request)
    records = await services(request).storage.list_interviews(org(claims))
    return JSONResponse({"interviews": [_summary(record) for record in records]})


async def get_interview(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    body = {
        **_summary(record),
        "org": record.org,
        "created_by": record.created_by,
        # Includes answer keys, sample solutions and tests: staff only.
        "definition": record.definition.model_dump(mode="json"),
    }
    return JSONResponse(body)


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


async def invite(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    body = await json_body(request)
    try:
        invitations = _Invitations.model_validate(body)
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid_request",
            "the invitation list is not valid",
            problems=problems(exc),
        ) from exc
    # The same candidate listed twice is invited once; the last entry wins.
    by_id = {candidate.id: candidate for candidate in invitations.candidates}
    invitees = [
        Invitee(id=UserId(c.id), name=c.name, email=c.email) for c in by_id.values()
    ]
    shared = services(request)
    await shared.storage.invite(record.id, invitees, shared.clock())
    return JSONResponse({"invited": len(invitees)}, status_code=201)


# -- candidate ------------------------------------------------------------------------


async def active(request: Request) -> Response:
    claims = caller(request, Role.CANDIDATE)
    shared = services(request)
    attempt = await shared.storage.active_attempt(claims.sub)
    now = shared.clock()
    session = frames.active_session(attempt, now)
    body = session.model_dump(mode="json") if session else None
    return JSONResponse({"active_session": body, "server_time": now})


def interview_routes() -> list[BaseRoute]:
    return [
        Route("/api/interviews", create_interview, methods=["POST"]),
        Route("/api/interviews", list_interviews, methods=["GET"]),
        # Before /{interview_id}, which would otherwise match "active".
        Route("/api/interviews/active", active, methods=["GET"]),
        Route("/api/interviews/{interview_id}", get_interview, methods=["GET"]),
        Route("/api/interviews/{interview_id}/invitations", invite, methods=["POST"]),
    ]
