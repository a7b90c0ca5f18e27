"""The interview API (PRODUCT.md section 3): staff create, list, read and archive
interviews; a candidate asks for the attempt in progress.

An archived interview takes no new attempts (``start`` and ``restart`` answer
``not_available`` with ``closes_at``, protocol/admission.py) and is still listed and
read with its results; unarchiving opens it again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from protocol import frames
from protocol.definition import DefinitionError, InterviewDefinition, parse_definition
from protocol.ids import Millis
from server.auth import Role
from server.http.access import (
    caller,
    cursor_checked,
    json_body,
    org,
    own_interview,
    parsed_query,
    reply,
    services,
    staff,
)
from server.http.bodies import (
    Active,
    InterviewDetail,
    InterviewList,
    InterviewListQuery,
    InterviewSummary,
)
from server.http.errors import ApiError
from server.http.openapi import Access, ErrorBody, Operation, Reply
from server.storage.attempts import InterviewRecord, Quota
from server.storage.catalogue import InterviewQuery

TAG = "interviews"


def _summary(record: InterviewRecord, archived_at: Millis | None) -> InterviewSummary:
    return InterviewSummary(
        id=record.id,
        title=record.definition.title,
        question_count=len(record.definition.questions),
        created_at=record.created_at,
        archived_at=archived_at,
    )


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
    return reply(_summary(record, None), 201, headers)


async def list_interviews(request: Request) -> Response:
    claims = staff(request)
    query = parsed_query(request, InterviewListQuery)
    selected = InterviewQuery(
        archived=query.archived,
        sort=query.sort,
        order=query.order,
        limit=query.limit,
        cursor=query.cursor,
    )
    with cursor_checked():
        page = await services(request).catalogue.interview_page(org(claims), selected)
    items = [_summary(item.record, item.archived_at) for item in page.items]
    return reply(InterviewList(interviews=items, next=page.next))


async def get_interview(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    archived_at = await services(request).storage.archived_at(record.id)
    summary = _summary(record, archived_at)
    detail = InterviewDetail(
        **summary.model_dump(),
        org=record.org,
        created_by=record.created_by,
        definition=record.definition,
    )
    return reply(detail)


async def archive(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    shared = services(request)
    archived_at = await shared.catalogue.set_archived(record.id, shared.clock())
    return reply(_summary(record, archived_at))


async def unarchive(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    await services(request).catalogue.set_archived(record.id, None)
    return reply(_summary(record, None))


async def active(request: Request) -> Response:
    claims = caller(request, Role.CANDIDATE)
    shared = services(request)
    attempt = await shared.storage.active_attempt(claims.sub)
    now = shared.clock()
    return reply(
        Active(active_session=frames.active_session(attempt, now), server_time=now)
    )


def interview_operations() -> list[Operation]:
    one = "/api/interviews/{interview_id}"
    return [
        Operation(
            "POST",
            "/api/interviews",
            create_interview,
            "Create an interview from a definition",
            Access.STAFF,
            (
                Reply(
                    201,
                    "Created",
                    InterviewSummary,
                    headers={"Location": "the interview's path"},
                ),
                Reply(409, "The organisation is at its quota (`limit`)", ErrorBody),
            ),
            TAG,
            body=InterviewDefinition,
            description="A definition that does not validate is 422 "
            "`invalid_definition` with the path of every wrong field.",
        ),
        Operation(
            "GET",
            "/api/interviews",
            list_interviews,
            "The organisation's interviews, a page at a time",
            Access.STAFF,
            (Reply(200, "A page", InterviewList),),
            TAG,
            query=InterviewListQuery,
        ),
        # Before /{interview_id}, which would otherwise match "active".
        Operation(
            "GET",
            "/api/interviews/active",
            active,
            "The candidate's attempt in progress (the data of `hello`)",
            Access.CANDIDATE,
            (Reply(200, "The attempt in progress, or null", Active),),
            TAG,
        ),
        Operation(
            "GET",
            one,
            get_interview,
            "One interview with its answer keys",
            Access.STAFF,
            (Reply(200, "The interview", InterviewDetail),),
            TAG,
        ),
        Operation(
            "POST",
            f"{one}/archive",
            archive,
            "Archive: no new attempts (the first archive time stays)",
            Access.STAFF,
            (Reply(200, "Archived", InterviewSummary),),
            TAG,
            description="Attempts in progress run to their end; `start` and "
            "`restart` answer `not_available` with `closes_at`.",
        ),
        Operation(
            "DELETE",
            f"{one}/archive",
            unarchive,
            "Unarchive: new attempts again",
            Access.STAFF,
            (Reply(200, "Not archived", InterviewSummary),),
            TAG,
        ),
    ]
