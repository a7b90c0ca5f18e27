"""Recruiters' results API (PRODUCT.md section 3): attempts, grades, corrections.

Recruiters and admins of the interview's organisation only; anything outside it is
404, like a missing attempt.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response

from protocol.ids import InterviewId, SessionId
from server.auth import Claims
from server.http.access import (
    cursor_checked,
    own_interview,
    parsed_body,
    parsed_query,
    path_id,
    reply,
    services,
    staff,
)
from server.http.bodies import (
    AuditPage,
    AuditQuery,
    Override,
    Reevaluation,
    SessionDetail,
    SessionItem,
    SessionList,
    SessionListQuery,
)
from server.http.errors import ApiError
from server.http.openapi import Access, ErrorBody, Operation, Reply
from server.storage.attempts import InterviewRecord
from server.storage.catalogue import SessionQuery
from server.storage.results import (
    MAX_AUDIT_PAGE,
    AuditPage as StoredAuditPage,
    SessionDetail as StoredDetail,
    SessionSummary,
)

CSV_COLUMNS = (
    *("session_id", "candidate_id", "candidate_name", "attempt", "status"),
    *("started_at", "completed_at", "evaluated_at"),
    *("final_score", "max_score", "percentage", "recommendation"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_INDEX = re.compile(r"[0-9]{1,6}")
TAG = "results"


def _actor(claims: Claims) -> str:
    return f"{claims.role}:{claims.sub}"


async def _own_session(
    request: Request, claims: Claims
) -> tuple[InterviewRecord, StoredDetail]:
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
    query = parsed_query(request, SessionListQuery)
    selected = SessionQuery(
        statuses=tuple(query.status),
        evaluations=tuple(query.evaluation),
        recommendations=tuple(query.recommendation),
        candidate=query.candidate,
        sort=query.sort,
        order=query.order,
        limit=query.limit,
        cursor=query.cursor,
    )
    with cursor_checked():
        page = await services(request).catalogue.session_page(interview.id, selected)
    items = [
        SessionItem(**asdict(item.summary), evaluation=item.evaluation)
        for item in page.items
    ]
    return reply(SessionList(sessions=items, next=page.next))


async def get_session(request: Request) -> Response:
    _, detail = await _own_session(request, staff(request))
    return reply(_detail(detail))


async def get_audit(request: Request) -> Response:
    """A page of the attempt's audit log after the cursor ``after``."""
    claims = staff(request)
    session_id = SessionId(path_id(request, "session_id"))
    query = parsed_query(request, AuditQuery)
    limit = min(query.limit, MAX_AUDIT_PAGE)
    shared = services(request)
    with cursor_checked("after"):
        page = await shared.results.audit_page(
            session_id, after=query.after, limit=limit
        )
    if page is None or not await _in_org(request, page, claims):
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    body = AuditPage(session_id=session_id, audit=list(page.audit), next=page.next)
    return reply(body)


async def _in_org(request: Request, page: StoredAuditPage, claims: Claims) -> bool:
    interview_id = InterviewId(page.interview_id)
    interview = await services(request).storage.get_interview(interview_id)
    return interview is not None and interview.org == claims.org


def _detail(detail: StoredDetail) -> SessionDetail:
    return SessionDetail(
        **asdict(detail.session),
        summary=detail.summary,
        summary_model=detail.summary_model,
        summary_prompt_version=detail.summary_prompt_version,
        summary_raw=detail.summary_raw,
        answers=list(detail.answers),
        audit=list(detail.audit),
        audit_next=detail.audit_next,
        late_answers=list(detail.late_answers),
    )


async def override(request: Request) -> Response:
    claims = staff(request)
    interview, detail = await _own_session(request, claims)
    index = _question_index(request, interview)
    message = "expected {'score': number, 'note': text}"
    change = await parsed_body(request, Override, message)
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
    return reply(_detail(updated))


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
    return reply(Reevaluation(session_id=session_id), 202)


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


def results_operations() -> list[Operation]:
    sessions = "/api/interviews/{interview_id}/sessions"
    one = "/api/sessions/{session_id}"
    return [
        Operation(
            "GET",
            sessions,
            list_sessions,
            "The interview's attempts (no answers), filtered, sorted, a page at a time",
            Access.STAFF,
            (Reply(200, "A page", SessionList),),
            TAG,
            query=SessionListQuery,
            description="Sorted by `sort` then id; attempts without a score sort "
            "below every score.",
        ),
        Operation(
            "GET",
            "/api/interviews/{interview_id}/results.csv",
            results_csv,
            "One row per attempt",
            Access.STAFF,
            (
                Reply(
                    200,
                    f"CSV with the columns {', '.join(CSV_COLUMNS)}",
                    media_type="text/csv",
                    schema={"type": "string"},
                    headers={"Content-Disposition": "attachment; filename=..."},
                ),
            ),
            TAG,
        ),
        Operation(
            "GET",
            one,
            get_session,
            "One attempt: answers, grades, feedback, summary, the first audit page",
            Access.STAFF,
            (Reply(200, "The attempt", SessionDetail),),
            TAG,
        ),
        Operation(
            "GET",
            f"{one}/audit",
            get_audit,
            "The attempt's audit log after a cursor, oldest first",
            Access.STAFF,
            (Reply(200, "A page", AuditPage),),
            TAG,
            query=AuditQuery,
        ),
        Operation(
            "POST",
            f"{one}/answers/{{question_index}}/override",
            override,
            "A recruiter's score beside the model's; totals recomputed",
            Access.STAFF,
            (Reply(200, "The attempt", SessionDetail),),
            TAG,
            body=Override,
        ),
        Operation(
            "POST",
            f"{one}/reevaluate",
            reevaluate,
            "Grade a completed or evaluated attempt again",
            Access.STAFF,
            (
                Reply(202, "Grading again", Reevaluation),
                Reply(409, "The attempt is in progress or abandoned", ErrorBody),
            ),
            TAG,
        ),
    ]
