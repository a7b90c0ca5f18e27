"""The authorisation matrix: every HTTP route and every socket action, called by each
kind of caller, answers as the tables below say (issue 11).

The callers are no token, a malformed one, an expired one, one signed with another
secret, a candidate, a recruiter of another organisation, a recruiter and an admin
(both of the organisation that owns the data). Staff see only their organisation:
anything of another one is 404, like a missing thing (PRODUCT.md section 3). On a
socket a bad token is ``error{unauthenticated}`` then close 4401, and a staff token
on the candidate socket close 4403 (PROTOCOL.md section 1).

The tables are checked against the app's own routes: a route without a row, or a row
without a route, fails :func:`test_every_route_of_the_app_has_a_row_in_the_matrix`.
To add one, add an :class:`HttpRow` (its expectations from :func:`scoped`,
:func:`own_org`, :func:`public` or :func:`candidate_only`) or a :class:`SocketRow`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol import audit
from protocol.attempt import begin, change_between, submit
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import parse_definition
from protocol.ids import InterviewId, SessionId, UserId
from protocol.webhooks.events import EventType
from protocol.webhooks.signature import SECRET_BYTES, format_secret
from server.app import create_app
from server.auth import issue_token
from server.storage.attempts import Invitee
from server.storage.webhooks import EndpointChanges, WebhookStore
from tests.e2e._client import UNIT_S
from tests.e2e.conftest import SECRET, Server, make_settings, question, served

pytestmark = pytest.mark.e2e

ORG = "acme"
OTHER_SECRET = "another-secret-that-is-at-least-32-bytes"


class Caller(enum.Enum):
    NO_TOKEN = "no token"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    OTHER_SECRET = "other secret"
    CANDIDATE = "candidate"
    OTHER_ORG = "recruiter of another organisation"
    RECRUITER = "recruiter"
    ADMIN = "admin"


UNAUTHENTICATED = (
    Caller.NO_TOKEN,
    Caller.MALFORMED,
    Caller.EXPIRED,
    Caller.OTHER_SECRET,
)
STAFF = (Caller.OTHER_ORG, Caller.RECRUITER, Caller.ADMIN)


def token(caller: Caller, sub: str) -> str | None:
    now = time.time()
    match caller:
        case Caller.NO_TOKEN:
            return None
        case Caller.MALFORMED:
            return "not.a.jwt"
        case Caller.EXPIRED:
            return issue_token(
                SECRET, sub=sub, role="recruiter", name="X", org=ORG, now_s=now - 7200
            )
        case Caller.OTHER_SECRET:
            return issue_token(
                OTHER_SECRET, sub=sub, role="admin", name="X", org=ORG, now_s=now
            )
        case Caller.CANDIDATE:
            return issue_token(SECRET, sub=sub, role="candidate", name="C", now_s=now)
        case Caller.OTHER_ORG:
            return issue_token(
                SECRET, sub=sub, role="recruiter", name="R", org="globex", now_s=now
            )
        case Caller.RECRUITER | Caller.ADMIN:
            role = caller.name.lower()
            return issue_token(SECRET, sub=sub, role=role, name="S", org=ORG, now_s=now)


# -- expectations ------------------------------------------------------------------

Statuses = Mapping[Caller, int]


def scoped(ok: int) -> Statuses:
    """Staff of the organisation only; another organisation's thing is 404."""
    return {
        **dict.fromkeys(UNAUTHENTICATED, 401),
        Caller.CANDIDATE: 403,
        Caller.OTHER_ORG: 404,
        Caller.RECRUITER: ok,
        Caller.ADMIN: ok,
    }


def own_org(ok: int) -> Statuses:
    """Staff, each on their own organisation's data (a list, a new interview)."""
    return {**scoped(ok), Caller.OTHER_ORG: ok}


def candidate_only(ok: int) -> Statuses:
    return {
        **dict.fromkeys(UNAUTHENTICATED, 401),
        Caller.CANDIDATE: ok,
        **dict.fromkeys(STAFF, 403),
    }


def public(ok: int = 200) -> Statuses:
    return dict.fromkeys(Caller, ok)


@dataclass(frozen=True)
class World:
    """What the rows act on: an interview of ``acme``, an invited candidate and
    their completed attempt, and a webhook endpoint of ``acme`` (disabled: nothing
    is sent) with the delivery of that completion."""

    interview_id: InterviewId
    session_id: SessionId
    candidate_id: UserId
    webhook_id: str
    delivery_id: str

    def fill(self, path: str, **fresh: str) -> str:
        ids = {
            "interview_id": self.interview_id,
            "session_id": self.session_id,
            "question_index": "0",
            "webhook_id": self.webhook_id,
            "delivery_id": self.delivery_id,
        }
        return path.format(**(ids | fresh))


DEFINITION = {
    "title": "Matrix",
    "settings": {"max_attempts": 3},
    "questions": [question("mcq", 600), question("short_answer", 600)],
}


Fresh = Callable[[Server], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class HttpRow:
    method: str
    path: str
    expected: Statuses
    body: Callable[[World], object] | None = None
    fresh: Fresh | None = None
    """Makes what one call uses up (a webhook to delete), before each caller's."""


HOOK_URL = "http://127.0.0.1:9/hook"
"""Loopback, a port nobody listens on: the matrix's server may call private
addresses, and nothing it sends leaves the machine."""
WEBHOOK = {"url": HOOK_URL, "event_types": ["session.completed"]}


async def new_webhook(server: Server, *, enabled: bool = True) -> str:
    store = WebhookStore(server.storage.database)
    record = await store.create_endpoint(
        org=ORG,
        url=HOOK_URL,
        description="matrix",
        event_types=list(EventType),
        enabled=enabled,
        secret=format_secret(b"k" * SECRET_BYTES),
        by="recruiter:rita",
        now=int(time.time() * 1000),
        limit=100,
    )
    return record.id


async def doomed_webhook(server: Server) -> dict[str, str]:
    return {"webhook_id": await new_webhook(server, enabled=False)}


HTTP_ROWS = [
    HttpRow("POST", "/api/interviews", own_org(201), lambda w: DEFINITION),
    HttpRow("GET", "/api/interviews", own_org(200)),
    HttpRow("GET", "/api/interviews/active", candidate_only(200)),
    HttpRow("GET", "/api/interviews/{interview_id}", scoped(200)),
    HttpRow("POST", "/api/interviews/{interview_id}/archive", scoped(200)),
    HttpRow("DELETE", "/api/interviews/{interview_id}/archive", scoped(200)),
    HttpRow(
        "POST",
        "/api/interviews/{interview_id}/invitations",
        scoped(201),
        lambda w: {"candidates": [{"id": "someone", "name": "Someone"}]},
    ),
    HttpRow("GET", "/api/interviews/{interview_id}/invitations", scoped(200)),
    HttpRow(
        "POST",
        "/api/interviews/{interview_id}/invitations/revoke",
        scoped(200),
        lambda w: {"candidate_id": "someone"},
    ),
    HttpRow("GET", "/api/interviews/{interview_id}/sessions", scoped(200)),
    HttpRow("GET", "/api/interviews/{interview_id}/results.csv", scoped(200)),
    HttpRow("GET", "/api/interviews/{interview_id}/statistics", scoped(200)),
    HttpRow("GET", "/api/sessions/{session_id}", scoped(200)),
    HttpRow("GET", "/api/sessions/{session_id}/audit", scoped(200)),
    HttpRow(
        "POST",
        "/api/sessions/{session_id}/answers/{question_index}/override",
        scoped(200),
        lambda w: {"score": 1, "note": "matrix"},
    ),
    HttpRow("POST", "/api/sessions/{session_id}/reevaluate", scoped(202)),
    HttpRow("POST", "/api/webhooks", own_org(201), lambda w: WEBHOOK),
    HttpRow("GET", "/api/webhooks", own_org(200)),
    HttpRow("GET", "/api/webhooks/{webhook_id}", scoped(200)),
    HttpRow(
        "PATCH",
        "/api/webhooks/{webhook_id}",
        scoped(200),
        lambda w: {"description": "matrix"},
    ),
    HttpRow("POST", "/api/webhooks/{webhook_id}/rotate", scoped(200), lambda w: {}),
    HttpRow("GET", "/api/webhooks/{webhook_id}/deliveries", scoped(200)),
    HttpRow("GET", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}", scoped(200)),
    # 409: the endpoint is disabled, so the redelivery is refused past the checks.
    HttpRow(
        "POST",
        "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        scoped(409),
    ),
    HttpRow("DELETE", "/api/webhooks/{webhook_id}", scoped(204), fresh=doomed_webhook),
    HttpRow("GET", "/healthz", public()),
    HttpRow("GET", "/readyz", public()),
    HttpRow("GET", "/metrics", public()),
    HttpRow("GET", "/protocol.schema.json", public()),
    HttpRow("GET", "/openapi.json", public()),
]


# -- sockets -------------------------------------------------------------------------

Outcome = tuple[str, ...]
"""What a socket answered: error codes or frame types, then the close code if it
closed (``("unauthenticated", "4401")``, ``("4403",)``, ``("state",)``)."""
CLOSED_4401: Outcome = ("unauthenticated", "4401")


def candidate_socket(candidate: Outcome) -> Mapping[Caller, Outcome]:
    return {
        **dict.fromkeys(UNAUTHENTICATED, CLOSED_4401),
        Caller.CANDIDATE: candidate,
        **dict.fromkeys(STAFF, ("4403",)),
    }


def monitor_socket(
    staff: Outcome, *, other_org: Outcome | None = None
) -> Mapping[Caller, Outcome]:
    return {
        **dict.fromkeys(UNAUTHENTICATED, CLOSED_4401),
        Caller.CANDIDATE: ("4403",),
        **dict.fromkeys(STAFF, staff),
        Caller.OTHER_ORG: other_org or staff,
    }


Frames = Callable[[World], list[dict[str, object]]]


@dataclass(frozen=True)
class SocketRow:
    path: str
    frames: Mapping[str, Frames]
    """Each action's frames (the first answer counts); ``auth`` is the login."""
    expected: Mapping[str, Mapping[Caller, Outcome]]


CANDIDATE_SOCKET = SocketRow(
    "/ws/candidate",
    frames={
        "auth": lambda w: [],
        "start": lambda w: [{"type": "start", "interview_id": w.interview_id}],
        "resume": lambda w: [{"type": "resume"}],
        "restart": lambda w: [{"type": "restart"}],
        "answer": lambda w: [{"type": "answer", "question_index": 0, "answer": "b"}],
        "draft": lambda w: [{"type": "draft", "question_index": 0, "answer": "b"}],
        "signal": lambda w: [{"type": "signal", "kind": "paste"}],
        "ping": lambda w: [{"type": "ping", "client_time": 1}],
    },
    expected={
        "auth": candidate_socket(("hello",)),
        "start": candidate_socket(("state",)),  # each action's candidate is invited
        "resume": candidate_socket(("no_active_session",)),
        "restart": candidate_socket(("no_active_session",)),
        "answer": candidate_socket(("not_attached",)),
        "draft": candidate_socket(("not_attached",)),
        "signal": candidate_socket(("not_attached",)),
        "ping": candidate_socket(("pong",)),
    },
)
MONITOR_SOCKET = SocketRow(
    "/ws/monitor",
    frames={
        "auth": lambda w: [],
        "subscribe": lambda w: [{"type": "subscribe", "interview_id": w.interview_id}],
        # Nothing answers an unsubscribe: the pong after it shows it was taken.
        "unsubscribe": lambda w: [
            {"type": "unsubscribe", "interview_id": w.interview_id},
            {"type": "ping", "client_time": 1},
        ],
        "ping": lambda w: [{"type": "ping", "client_time": 1}],
    },
    expected={
        "auth": monitor_socket(("hello",)),
        "subscribe": monitor_socket(("snapshot",), other_org=("not_found",)),
        "unsubscribe": monitor_socket(("pong",)),
        "ping": monitor_socket(("pong",)),
    },
)
SOCKET_ROWS = [CANDIDATE_SOCKET, MONITOR_SOCKET]


# -- the tests -----------------------------------------------------------------------


def test_every_route_of_the_app_has_a_row_in_the_matrix(database_url: str) -> None:
    app = create_app(make_settings(database_url))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    sockets = {route.path for route in app.routes if isinstance(route, WebSocketRoute)}

    assert served == {(row.method, row.path) for row in HTTP_ROWS}
    assert sockets == {row.path for row in SOCKET_ROWS}
    assert all(set(row.expected) == set(Caller) for row in HTTP_ROWS)
    for socket in SOCKET_ROWS:
        assert set(socket.expected) == set(socket.frames)
        assert all(set(cells) == set(Caller) for cells in socket.expected.values())


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    """A server that may call loopback webhooks (:data:`HOOK_URL`)."""
    async with served(make_settings(database_url, webhook_allow_private=True)) as up:
        yield up


async def world_of(server: Server) -> World:
    storage = server.storage
    now = int(time.time() * 1000)
    record = await storage.create_interview(
        org=ORG,
        created_by=UserId("rita"),
        definition=parse_definition(DEFINITION),
        now=now,
    )
    actions = CANDIDATE_SOCKET.frames
    invited = ["cand", *(f"cand-{action}" for action in actions)]
    invitees = [Invitee(UserId(sub), sub, None) for sub in invited]
    await storage.invite(record.id, invitees, now)
    attempt = begin(
        session_id=SessionId(f"matrix-{now}"),
        interview_id=record.id,
        title=record.title,
        candidate_id=UserId("cand"),
        number=1,
        questions=record.questions,
        grace_ms=record.settings.grace_ms,
        now=now,
    )
    entry = AuditEntry(now, "candidate:cand", AuditKind.STARTED)
    await storage.create_attempt(attempt, candidate_name="Cand", audit=[entry])
    webhook_id = await new_webhook(server)  # before the completion it is told of
    for index, text in enumerate(["b", "some text"]):
        after = submit(attempt, index, text, now + index + 1).attempt
        ended = [] if after.in_progress else [audit.completed(after, "cand", now + 3)]
        await storage.commit(change_between(attempt, after), fence=None, audit=ended)
        attempt = after
    store = WebhookStore(storage.database)
    # Disabled: the dispatcher sends nothing, and redelivery is refused (409).
    await store.update_endpoint(
        ORG, webhook_id, EndpointChanges(enabled=False), now + 4
    )
    page = await store.deliveries(ORG, webhook_id, after=None, limit=1)
    assert page is not None
    [delivery] = page.deliveries
    return World(record.id, attempt.session_id, UserId("cand"), webhook_id, delivery.id)


async def test_every_http_route_answers_each_caller_as_the_matrix_says(
    server: Server,
) -> None:
    world = await world_of(server)
    got: dict[tuple[str, str], dict[Caller, int]] = {}
    async with httpx.AsyncClient(base_url=server.http, timeout=UNIT_S) as http:
        for row in HTTP_ROWS:
            cells = got.setdefault((row.method, row.path), {})
            for caller in Caller:
                bearer = token(caller, "rita")
                headers = (
                    {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
                )
                body = None if row.body is None else row.body(world)
                fresh = {} if row.fresh is None else await row.fresh(server)
                path = world.fill(row.path, **fresh)
                response = await http.request(
                    row.method, path, json=body, headers=headers
                )
                cells[caller] = response.status_code

    expected = {(row.method, row.path): dict(row.expected) for row in HTTP_ROWS}
    wrong = {
        route: {
            caller.value: (expected[route][caller], status)
            for caller, status in cells.items()
            if status != expected[route][caller]
        }
        for route, cells in got.items()
        if cells != expected[route]
    }
    assert wrong == {}  # route: {caller: (expected, got)}


async def socket_outcome(
    server: Server, row: SocketRow, action: str, caller: Caller, world: World
) -> Outcome:
    url = f"ws://127.0.0.1:{server.port}{row.path}"
    bearer = token(caller, f"cand-{action}")
    login: dict[str, object] = {"type": "auth"}
    if bearer is not None:
        login["token"] = bearer
    # Without a token, the action is the first frame (for auth: one without a token).
    sent = [login] if action == "auth" or bearer is not None else []
    frames = [*sent, *row.frames[action](world)]
    seen: list[str] = []
    async with connect(url, open_timeout=UNIT_S) as ws:
        for frame in frames:
            await ws.send(json.dumps(frame))
        try:
            async with asyncio.timeout(UNIT_S):
                while True:
                    reply: dict[str, Any] = json.loads(await ws.recv())
                    if reply["type"] == "hello" and action != "auth":
                        continue
                    seen.append(reply.get("code", reply["type"]))
                    if reply.get("code") != "unauthenticated":
                        return tuple(seen)
        except ConnectionClosed:
            pass
        assert ws.close_code is not None
        return (*seen, str(ws.close_code))


async def test_every_socket_action_answers_each_caller_as_the_matrix_says(
    server: Server,
) -> None:
    world = await world_of(server)
    wrong = {}
    for row in SOCKET_ROWS:
        for action, cells in row.expected.items():
            for caller, outcome in cells.items():
                got = await socket_outcome(server, row, action, caller, world)
                if got != outcome:
                    wrong[row.path, action, caller.value] = (outcome, got)

    assert wrong == {}  # (socket, action, caller): (expected, got)
