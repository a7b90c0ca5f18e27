"""What every route needs of its request: the services, the caller, the body.

The caller's claims come from the bearer token (:mod:`server.auth`); staff see only
their organisation's interviews, and another organisation's interview is answered
like a missing one.
"""

from __future__ import annotations

import codecs
import re

from pydantic import ValidationError
from pydantic_core import from_json
from starlette.requests import Request

from protocol.ids import InterviewId
from server.auth import Claims, Role, TokenRules, bearer_claims
from server.http.errors import ApiError
from server.services import Services
from server.storage.attempts import InterviewRecord

# A definition may hold 200 questions of 20,000 characters each.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The ids this server makes are uuid4().hex; tests and imports use short words.
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
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
