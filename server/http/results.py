"""Recruiters' results API (PRODUCT.md section 3): attempts, grades, corrections.

Recruiters and admins of the interview's organisation only; anything outside it is
404, like a missing attempt.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.ids import InterviewId, SessionId
from server.auth import Claims
from server.http.access import (
    json_body,
    own_interview,
    path_id,
    problems,
    services,
    staff,
)
from server.http.errors import ApiError
from server.storage.attempts import InterviewRecord
from server.storage.results import (
    AUDIT_PAGE,
    MAX_AUDIT_PAGE,
    AuditPage,
    SessionDetail,
    SessionSummary,
)

CSV_COLUMNS = (
    *("session_id", "candidate_id", "candidate_name", "attempt", "status"),
    *("started_at", "completed_at", "evaluated_at"),
    *("final_score", "max_score", "percentage", "recommendation"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_INDEX = re.compile(r"[0-9]{1,6}")


def _actor(claims: Claims) -> str:
    return f"{claims.role}:{claims.sub}"


async def _own_session(
    request: Request, claims: Claims
) -> tuple[InterviewRecord, SessionDetail]:
    """The attempt of the path, when its interview belongs to the caller's org."""
    session_id = SessionId(path_id(request, "session_id"))
    shared = services(request)
    detail = await shared.results.session_detail(session_id)
    interview = None
    if detail is not None:
        interview_id = InterviewId(detail.session.interview_id)
        interview = await shared.storage.get_interview(interview_id)
    # Another organisation's attempt is indistinguishable from a missing one.
    if detail is None or interview is None or interview.org != claims.org:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return interview, detail


async def list_sessions(request: Request) -> Response:
    interview = await own_interview(request, staff(request))
    sessions = await services(request).results.list_sessions(interview.id)
    return JSONResponse({"sessions": [asdict(session) for session in sessions]})


async def get_session(request: Request) -> Response:
    _, detail = await _own_session(request, staff(request))
    return JSONResponse(_detail_json(detail))


async def get_audit(request: Request) -> Response:
    """A page of the attempt's audit log after the cursor ``after``."""
    claims = staff(request)
    session_id = SessionId(path_id(request, "session_id"))
    limit = _page_limit(request.query_params.get("limit"))
    after = request.query_params.get("after") or None
    shared = services(request)
    try:
        page = await shared.results.audit_page(session_id, after=after, limit=limit)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    if page is None or not await _in_org(request, page, claims):
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    audit = [asdict(line) for line in page.audit]
    return JSONResponse({"session_id": session_id, "audit": audit, "next": page.next})


async def _in_org(request: Request, page: AuditPage, claims: Claims) -> bool:
    interview_id = InterviewId(page.interview_id)
    interview = await services(request).storage.get_interview(interview_id)
    return interview is not None and interview.org == claims.org


def _page_limit(raw: str | None) -> int:
    """``limit`` from 1 up; more than :data:`MAX_AUDIT_PAGE` is that many."""
    if raw is None:
        return AUDIT_PAGE
    digits = raw.lstrip("0")
    if not raw.isascii() or not raw.isdigit() or not digits:
        message = f"expected a limit from 1 to {MAX_AUDIT_PAGE}, got {raw[:40]!r}"
        raise ApiError(422, "invalid_request", message)
    return MAX_AUDIT_PAGE if len(digits) > 9 else min(int(digits), MAX_AUDIT_PAGE)


def _detail_json(detail: SessionDetail) -> dict[str, object]:
    body = asdict(detail)
    return {**body.pop("session"), **body}


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    score: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


async def override(request: Request) -> Response:
    claims = staff(request)
    interview, detail = await _own_session(request, claims)
    index = _question_index(request, interview)
    body = await json_body(request)
    try:
        change = _Override.model_validate(body)
    except ValidationError as exc:
        message = "expected {'score': number, 'note': text}"
        raise ApiError(422, "invalid_request", message, problems=problems(exc)) from exc
    points = interview.definition.questions[index].points
    if change.score > points:
        message = f"expected a score from 0 to {points:g}, got {change.score:g}"
        raise ApiError(422, "invalid_request", message)
    session_id = SessionId(detail.session.id)
    shared = services(request)
    await shared.grading.override(
        interview.id,
        session_id,
        index,
        score=change.score,
        note=change.note,
        by=_actor(claims),
    )
    updated = await shared.results.session_detail(session_id)
    assert updated is not None, "attempts are never deleted"
    return JSONResponse(_detail_json(updated))


def _question_index(request: Request, interview: InterviewRecord) -> int:
    raw: str = request.path_params["question_index"]
    count = len(interview.definition.questions)
    # Not str.isdigit(): it takes "²", which int() refuses; and int() refuses more
    # than 4,300 digits.
    if _INDEX.fullmatch(raw) is None or int(raw) >= count:
        raise ApiError(404, "not_found", f"no question {raw[:64]!r} in this interview")
    return int(raw)


async def reevaluate(request: Request) -> Response:
    claims = staff(request)
    _, detail = await _own_session(request, claims)
    session_id = SessionId(detail.session.id)
    if not await services(request).grading.reevaluate(session_id, by=_actor(claims)):
        status = detail.session.status
        message = f"expected a completed or evaluated attempt, it is {status}"
        raise ApiError(409, "conflict", message)
    return JSONResponse({"session_id": session_id, "status": "completed"}, 202)


async def results_csv(request: Request) -> Response:
    interview = await own_interview(request, staff(request))
    sessions = await services(request).results.list_sessions(interview.id)
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(session) for session in sessions)
    filename = f"results-{interview.id}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(output.getvalue(), media_type="text/csv", headers=headers)


def _csv_row(session: SessionSummary) -> list[object]:
    return [
        session.id,
        _cell(session.candidate_id),
        _cell(session.candidate_name),
        session.number,
        session.status,
        session.started_at,
        session.completed_at,
        session.evaluated_at,
        session.final_score,
        session.max_score,
        session.percentage,
        session.recommendation,
    ]


def _cell(text: str) -> str:
    # Spreadsheets run a cell starting like a formula: candidates choose their names.
    return "'" + text if text.startswith(_FORMULA_START) else text


def results_routes() -> list[BaseRoute]:
    return [
        Route(
            "/api/interviews/{interview_id}/sessions", list_sessions, methods=["GET"]
        ),
        Route(
            "/api/interviews/{interview_id}/results.csv", results_csv, methods=["GET"]
        ),
        Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/audit", get_audit, methods=["GET"]),
        Route(
            "/api/sessions/{session_id}/answers/{question_index}/override",
            override,
            methods=["POST"],
        ),
        Route("/api/sessions/{session_id}/reevaluate", reevaluate, methods=["POST"]),
    ]
