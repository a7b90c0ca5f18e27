"""What every route needs of its request: the services, the caller, the body.

The caller's claims come from the bearer token (:mod:`server.auth`); staff see only
their organisation's interviews, and another organisation's interview is answered
like a missing one.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse

from protocol.ids import InterviewId
from server.auth import Claims, Role, TokenRules, bearer_claims
from server.http.errors import ApiError
from server.http.openapi import is_list
from server.services import Services
from server.storage.attempts import InterviewRecord

# A definition may hold 200 questions of 20,000 characters each.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The ids this server makes are uuid4().hex; tests and imports use short words.
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
Model = TypeVar("Model", bound=BaseModel)
# "\u0000" in a JSON string (an odd number of backslashes before the u): PostgreSQL
# text cannot hold NUL, so it is refused for every database alike.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def services(request: Request) -> Services:
    """The app's one container (``create_app`` puts it in ``app.state``)."""
    found: Services = request.app.state.services
    return found


def caller(request: Request, *roles: Role) -> Claims:
    claims = bearer_claims(request, TokenRules.of(services(request).settings))
    if claims.role not in roles:
        allowed = " or ".join(roles)
        raise ApiError(403, "forbidden", f"this needs a {allowed} token")
    return claims


def staff(request: Request) -> Claims:
    return caller(request, Role.RECRUITER, Role.ADMIN)


def org(claims: Claims) -> str:
    # auth.verify_token refuses staff tokens without an org; this is the type guard.
    if claims.org is None:
        raise ApiError(403, "forbidden", "this needs a token with an 'org' claim")
    return claims.org


async def own_interview(request: Request, claims: Claims) -> InterviewRecord:
    """The interview of the path, when it belongs to the caller's organisation."""
    interview_id = InterviewId(path_id(request, "interview_id"))
    record = await services(request).storage.get_interview(interview_id)
    # Another organisation's interview is indistinguishable from a missing one.
    if record is None or record.org != claims.org:
        raise ApiError(404, "not_found", f"no interview {interview_id!r}")
    return record


def path_id(request: Request, name: str) -> str:
    """The id in the path, or 404 when it is not one this server could have made
    (e.g. a NUL byte, which PostgreSQL refuses to compare)."""
    raw: str = request.path_params[name]
    if _ID.fullmatch(raw) is None:
        thing = name.removesuffix("_id")
        raise ApiError(404, "not_found", f"no {thing} {raw[:64]!r}")
    return raw


async def json_body(request: Request) -> object:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            limit = f"{MAX_BODY_BYTES} bytes"
            raise ApiError(413, "too_large", f"expected a body of at most {limit}")
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def parse_json(body: bytes) -> object:
    """``body`` decoded, or 400 ``bad_request``.

    pydantic's parser, not :func:`json.loads`: it stops at 200 levels of nesting
    with an error (``json.loads`` raises ``RecursionError`` past about 1,000) and
    refuses lone surrogates (which no database driver can encode).
    """
    body = body.removeprefix(codecs.BOM_UTF8)  # json.loads skipped it too
    try:
        data = from_json(body)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"expected a JSON body: {exc}") from exc
    if _NUL.search(body):
        message = "expected a JSON body without NUL characters (\\u0000) in strings"
        raise ApiError(400, "bad_request", message)
    return data


def problems(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"path": "a.0.b", "message": ...}`` for the body."""
    return [
        {
            "path": ".".join(str(part) for part in error["loc"]) or "(root)",
            "message": error["msg"],
        }
        for error in exc.errors()
    ]


def parsed_query(request: Request, model: type[Model]) -> Model:
    """The query string as ``model``, or 422 ``invalid_request`` with the paths of
    the wrong parameters; a repeatable one takes every value, another the last."""
    params = request.query_params
    values: dict[str, object] = {}
    for name in model.model_fields:
        if is_list(model, name):
            if name in params:
                values[name] = params.getlist(name)
        elif name in params:
            values[name] = params[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message = "the query parameters are not valid"
        raise ApiError(422, "invalid_request", message, problems=problems(exc)) from exc


async def parsed_body(request: Request, model: type[Model], message: str) -> Model:
    """The JSON body as ``model`` (400 and 413 as :func:`json_body`), or 422
    ``invalid_request`` with the paths of the wrong fields and ``message``."""
    body = await json_body(request)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", message, problems=problems(exc)) from exc


def reply(
    body: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status, headers=headers)


@contextlib.contextmanager
def cursor_checked(name: str = "cursor") -> Iterator[None]:
    """A list's cursor that its store refused (:class:`ValueError`) is 422."""
    try:
        yield
    except ValueError as exc:
        problem = {"path": name, "message": str(exc)}
        raise ApiError(422, "invalid_request", str(exc), problems=[problem]) from exc
