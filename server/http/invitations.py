"""Invitations (PRODUCT.md section 3): staff invite candidates, list the invitations
of an interview with their state, and revoke one.

A revoked invitation makes ``start`` (and ``restart``) answer ``not_found``, as if
the candidate had never been invited; an attempt already in progress runs to its end
(its deadlines are the server's, and a candidate mid-question is never cut off), and
its results stay. Inviting the candidate again restores the invitation.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from protocol.ids import UserId
from server.http.access import (
    cursor_checked,
    own_interview,
    parsed_body,
    parsed_query,
    reply,
    services,
    staff,
)
from server.http.bodies import (
    Invitation,
    InvitationList,
    InvitationListQuery,
    Invitations,
    Invited,
    Revocation,
)
from server.http.errors import ApiError
from server.http.openapi import Access, Operation, Reply
from server.storage.attempts import Invitee
from server.storage.catalogue import InvitationQuery, InvitationRecord

TAG = "invitations"


async def invite(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    invitations = await parsed_body(
        request, Invitations, "the invitation list is not valid"
    )
    # The same candidate listed twice is invited once; the last entry wins.
    by_id = {candidate.id: candidate for candidate in invitations.candidates}
    invitees = [
        Invitee(id=UserId(c.id), name=c.name, email=c.email) for c in by_id.values()
    ]
    shared = services(request)
    await shared.storage.invite(record.id, invitees, shared.clock())
    return reply(Invited(invited=len(invitees)), 201)


async def list_invitations(request: Request) -> Response:
    record = await own_interview(request, staff(request))
    query = parsed_query(request, InvitationListQuery)
    selected = InvitationQuery(
        states=tuple(query.state),
        revoked=query.revoked,
        limit=query.limit,
        cursor=query.cursor,
    )
    with cursor_checked():
        page = await services(request).catalogue.invitation_page(record.id, selected)
    items = [_invitation(item) for item in page.items]
    return reply(InvitationList(invitations=items, next=page.next))


async def revoke(request: Request) -> Response:
    claims = staff(request)
    record = await own_interview(request, claims)
    revocation = await parsed_body(
        request, Revocation, "expected {'candidate_id': text}"
    )
    shared = services(request)
    candidate = UserId(revocation.candidate_id)
    revoked = await shared.catalogue.revoke(
        record.id, candidate, by=f"{claims.role}:{claims.sub}", now=shared.clock()
    )
    if revoked is None:
        message = f"no invitation of {candidate[:64]!r} to this interview"
        raise ApiError(404, "not_found", message)
    return reply(_invitation(revoked))


def _invitation(record: InvitationRecord) -> Invitation:
    return Invitation(
        candidate_id=record.candidate_id,
        name=record.name,
        email=record.email,
        invited_at=record.invited_at,
        revoked_at=record.revoked_at,
        revoked_by=record.revoked_by,
        state=record.state,
        attempts=record.attempts,
        latest_session_id=record.latest_session_id,
    )


def invitation_operations() -> list[Operation]:
    path = "/api/interviews/{interview_id}/invitations"
    return [
        Operation(
            "POST",
            path,
            invite,
            "Invite candidates (again: updates name and email, restores a revoked one)",
            Access.STAFF,
            (Reply(201, "Invited", Invited),),
            TAG,
            body=Invitations,
        ),
        Operation(
            "GET",
            path,
            list_invitations,
            "The interview's invitations with their state, a page at a time",
            Access.STAFF,
            (Reply(200, "A page, by candidate id", InvitationList),),
            TAG,
            query=InvitationListQuery,
        ),
        Operation(
            "POST",
            f"{path}/revoke",
            revoke,
            "Revoke an invitation: no new attempts (the first revocation stays)",
            Access.STAFF,
            (Reply(200, "The invitation, revoked", Invitation),),
            TAG,
            body=Revocation,
            description="An attempt in progress runs to its end; `start` and "
            "`restart` answer `not_found`. 404 when the candidate is not invited.",
        ),
    ]
