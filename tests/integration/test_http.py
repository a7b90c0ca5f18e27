from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.datastructures import Secret

from protocol.attempt import begin
from protocol.audit import AuditEntry, AuditKind
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.auth import issue_token
from server.candidate.scheduler import Scheduler
from server.cluster.bus import InProcessBus
from server.cluster.lock import InProcessLock
from server.errors import Unavailable
from server.http import exception_handlers, middleware, routes
from server.metrics import Metrics
from server.services import Services
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, Storage
from server.storage.catalogue import Catalogue

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-long-enough-for-hs256"
SETTINGS = Settings(jwt_secret=Secret(SECRET))
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "full-stack-developer.json"
START: Millis = 1_800_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now: Millis = START

    def __call__(self) -> Millis:
        return self.now


UNUSED: Any = None
"""The interview routes never reach the results store or grading."""


def _app(storage: object, clock: FakeClock, **changes: Any) -> Starlette:
    services = Services(
        settings=SETTINGS,
        clock=clock,
        storage=cast(Storage, storage),
        results=UNUSED,
        catalogue=(
            Catalogue(storage.database)
            if isinstance(storage, DatabaseStorage)
            else cast(Catalogue, storage)
        ),
        lock=InProcessLock(),
        bus=InProcessBus(),
        grading=UNUSED,
        scheduler=Scheduler(clock),
    )
    app = Starlette(
        routes=routes(), middleware=middleware, exception_handlers=exception_handlers
    )
    app.state.services = dataclasses.replace(services, **changes)
    return app


def _client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    storage: DatabaseStorage, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_app(storage, clock)) as client:
        yield client


def _fresh(prefix: str) -> str:
    # Fresh ids per test, so runs against a shared PostgreSQL never interfere.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _auth(
    role: str, *, sub: str | None = None, org: str | None = None
) -> dict[str, str]:
    # Tokens are checked against the wall clock, not the fake server clock.
    token = issue_token(
        SECRET,
        sub=sub or _fresh(role),
        role=role,
        name=role.title(),
        org=org,
        now_s=time.time(),
    )
    return {"Authorization": f"Bearer {token}"}


def _definition(**changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(changes)
    return data


async def _create(
    client: httpx.AsyncClient, org: str, **changes: object
) -> dict[str, object]:
    response = await client.post(
        "/api/interviews",
        json=_definition(**changes),
        headers=_auth("recruiter", org=org),
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


# -- operations -----------------------------------------------------------------------


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ok_when_the_database_answers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


class UnreachableStorage:
    async def ping(self) -> None:
        raise Unavailable("connection refused")

    async def interview_page(self, org: str, query: object) -> None:
        raise Unavailable("connection refused")

    async def active_attempt(self, candidate_id: UserId) -> None:
        raise RuntimeError("a bug")


async def test_readyz_is_503_naming_the_database_when_its_ping_fails(
    clock: FakeClock,
) -> None:
    async with _client(_app(UnreachableStorage(), clock)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "failed"},
    }


async def test_readyz_is_503_naming_the_broker_when_it_is_not_ready(
    storage: DatabaseStorage, clock: FakeClock
) -> None:
    async def not_ready() -> bool:
        return False

    app = _app(storage, clock, readiness={"broker": not_ready})
    async with _client(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "failed"}


async def test_storage_unavailable_is_a_json_503(clock: FakeClock) -> None:
    async with _client(_app(UnreachableStorage(), clock)) as client:
        response = await client.get(
            "/api/interviews", headers=_auth("recruiter", org="acme")
        )

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


async def test_unexpected_failure_is_a_json_500_without_details(
    clock: FakeClock,
) -> None:
    async with _client(_app(UnreachableStorage(), clock)) as client:
        response = await client.get(
            "/api/interviews/active", headers=_auth("candidate")
        )

    assert response.status_code == 500
    assert response.json() == {"error": "internal", "message": "internal server error"}


async def test_unexpected_failure_is_logged_once_with_its_traceback(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with _client(_app(UnreachableStorage(), clock)) as client:
        with caplog.at_level(logging.ERROR):
            await client.get("/api/interviews/active", headers=_auth("candidate"))

    [record] = caplog.records
    assert record.getMessage().startswith("unexpected failure in GET ")
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "a bug"


async def test_protocol_schema_lists_client_and_server_frames(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/protocol.schema.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["protocol"] == 1
    assert "client_to_server" in schema
    assert "server_to_client" in schema


async def test_metrics_come_from_the_registry_of_the_services(
    storage: DatabaseStorage, clock: FakeClock
) -> None:
    registry = CollectorRegistry()
    Counter("interview_test_total", "A test counter.", registry=registry).inc()

    app = _app(storage, clock, metrics=Metrics(registry))
    async with _client(app) as client:
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "interview_test_total 1.0" in response.text


async def test_metrics_are_the_sockets_own_and_not_the_process_wide_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert "interview_sockets_open 0.0" in response.text
    assert "python_info" not in response.text


# -- authentication and roles ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwdw=="},
    ],
)
async def test_missing_or_bad_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/interviews", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.json()["message"]


async def test_token_signed_with_another_secret_is_401(
    client: httpx.AsyncClient,
) -> None:
    forged = issue_token(
        "x" * 40, sub="m", role="admin", name="M", org="acme", now_s=time.time()
    )

    response = await client.get(
        "/api/interviews", headers={"Authorization": f"Bearer {forged}"}
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/interviews"),
        ("GET", "/api/interviews"),
        ("GET", "/api/interviews/some-id"),
        ("POST", "/api/interviews/some-id/invitations"),
    ],
)
async def test_candidate_cannot_use_recruiter_endpoints(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=_auth("candidate"), json={})

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_recruiter_cannot_ask_for_a_candidates_active_session(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/api/interviews/active", headers=_auth("recruiter", org="acme")
    )

    assert response.status_code == 403


# -- interviews -----------------------------------------------------------------------


async def test_recruiter_creates_an_interview_from_a_definition(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/interviews",
        json=_definition(),
        headers=_auth("recruiter", org=_fresh("org")),
    )

    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Full Stack Developer Interview"
    assert body["question_count"] == 6
    assert body["created_at"] == START
    assert response.headers["location"] == f"/api/interviews/{body['id']}"


async def test_admin_may_create_interviews_too(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/interviews", json=_definition(), headers=_auth("admin", org="acme")
    )

    assert response.status_code == 201


async def test_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/interviews",
        content=b"{not json",
        headers=_auth("recruiter", org="acme"),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        json.dumps(_definition(title="DEEP"))
        .encode()
        .replace(b'"DEEP"', _nested(250).encode()),
        json.dumps(_definition(title="\ud800")).encode(),
        json.dumps(_definition(title="a\u0000b")).encode(),
    ],
    ids=["deep", "deep-inside-a-definition", "lone-surrogate", "nul"],
)
async def test_a_body_no_parser_or_database_takes_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    org = _fresh("org")
    created = await _create(client, org)
    headers = _auth("recruiter", org=org)
    for path in ["/api/interviews", f"/api/interviews/{created['id']}/invitations"]:
        response = await client.post(path, content=body, headers=headers)

        assert response.status_code == 400, response.text
        assert response.json()["error"] == "bad_request"


@pytest.mark.parametrize("levels", [40, 150])
async def test_a_test_value_nested_too_deep_is_422_at_its_path(
    client: httpx.AsyncClient, levels: int
) -> None:
    # 150 levels passed before, and the stored definition then failed to load on
    # every instance but the one that had created it (pydantic's parser stops at 200).
    definition = _definition()
    questions = definition["questions"]
    assert isinstance(questions, list)
    questions[4]["tests"]["cases"][0]["expected"] = json.loads(_nested(levels))

    response = await client.post(
        "/api/interviews", json=definition, headers=_auth("recruiter", org="acme")
    )

    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem["path"] == "questions.4.tests.cases.0.expected"


async def test_invalid_definition_is_422_with_the_paths_of_every_problem(
    client: httpx.AsyncClient,
) -> None:
    definition = _definition()
    questions = definition["questions"]
    assert isinstance(questions, list)
    questions[0]["points"] = -1
    questions[1]["correct_answer"] = "z"
    del definition["title"]

    response = await client.post(
        "/api/interviews", json=definition, headers=_auth("recruiter", org="acme")
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_definition"
    paths = {problem["path"] for problem in body["problems"]}
    assert paths == {"title", "questions.0.points", "questions.1.correct_answer"}
    assert all(problem["message"] for problem in body["problems"])


async def test_an_organisation_past_its_interview_quota_is_409(
    storage: DatabaseStorage, clock: FakeClock
) -> None:
    settings = dataclasses.replace(SETTINGS, org_max_interviews=2)
    org, other = _fresh("org"), _fresh("org")
    async with _client(_app(storage, clock, settings=settings)) as client:
        for _ in range(2):
            await _create(client, org)

        refused = await client.post(
            "/api/interviews", json=_definition(), headers=_auth("recruiter", org=org)
        )
        await _create(client, other)  # another organisation counts on its own

    assert refused.status_code == 409
    body = refused.json()
    assert (body["error"], body["limit"]) == ("quota_exceeded", "interviews")
    assert body["message"] == (
        f"organisation {org!r} has 2 interviews, the most its quota allows"
    )


async def test_an_organisation_past_its_definition_bytes_quota_is_409(
    storage: DatabaseStorage, clock: FakeClock
) -> None:
    settings = dataclasses.replace(SETTINGS, org_max_definition_bytes=10_000)
    org = _fresh("org")
    async with _client(_app(storage, clock, settings=settings)) as client:
        await _create(client, org)  # the example: about 6 KB stored

        refused = await client.post(
            "/api/interviews", json=_definition(), headers=_auth("recruiter", org=org)
        )

    assert refused.status_code == 409
    body = refused.json()
    assert (body["error"], body["limit"]) == ("quota_exceeded", "definition_bytes")
    assert "over its quota of 10000" in body["message"]


async def test_list_shows_only_the_callers_organisation(
    client: httpx.AsyncClient,
) -> None:
    ours, theirs = _fresh("org"), _fresh("org")
    first = await _create(client, ours)
    second = await _create(client, ours, title="Backend Interview")
    await _create(client, theirs)

    response = await client.get("/api/interviews", headers=_auth("recruiter", org=ours))

    assert response.status_code == 200
    listed = response.json()["interviews"]
    assert sorted(item["id"] for item in listed) == sorted(
        [str(first["id"]), str(second["id"])]
    )
    assert {item["title"] for item in listed} == {
        "Full Stack Developer Interview",
        "Backend Interview",
    }
    fields = {"id", "title", "question_count", "created_at", "archived_at"}
    assert all(set(item) == fields for item in listed)


async def test_recruiter_reads_the_full_definition_with_answer_keys(
    client: httpx.AsyncClient,
) -> None:
    org = _fresh("org")
    created = await _create(client, org)

    response = await client.get(
        f"/api/interviews/{created['id']}", headers=_auth("recruiter", org=org)
    )

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["org"] == org
    questions = body["definition"]["questions"]
    assert questions[0]["correct_answer"] == "c"
    assert questions[4]["tests"]["entrypoint"] == "parse_query_string"
    assert questions[4]["sample_solution"]


async def test_another_organisations_interview_is_404(
    client: httpx.AsyncClient,
) -> None:
    created = await _create(client, _fresh("org"))
    stranger = _auth("recruiter", org=_fresh("org"))

    read = await client.get(f"/api/interviews/{created['id']}", headers=stranger)
    invite = await client.post(
        f"/api/interviews/{created['id']}/invitations",
        json={"candidates": [{"id": "c1", "name": "Ada"}]},
        headers=stranger,
    )

    assert read.status_code == 404
    assert read.json()["error"] == "not_found"
    assert invite.status_code == 404


async def test_unknown_interview_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/interviews/no-such-interview", headers=_auth("recruiter", org="acme")
    )

    assert response.status_code == 404


@pytest.mark.parametrize("interview", ["%00", "a%00b", "x" * 65, "%C2%B2"])
async def test_an_interview_id_no_server_could_make_is_404(
    client: httpx.AsyncClient, interview: str
) -> None:
    headers = _auth("recruiter", org="acme")
    invitations = {"candidates": [{"id": "c1", "name": "Ada"}]}
    for response in [
        await client.get(f"/api/interviews/{interview}", headers=headers),
        await client.post(
            f"/api/interviews/{interview}/invitations",
            json=invitations,
            headers=headers,
        ),
    ]:
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"


# -- invitations ----------------------------------------------------------------------


async def test_recruiter_invites_candidates_once_each(
    client: httpx.AsyncClient, storage: DatabaseStorage
) -> None:
    org = _fresh("org")
    created = await _create(client, org)
    ada, alan = _fresh("ada"), _fresh("alan")

    response = await client.post(
        f"/api/interviews/{created['id']}/invitations",
        json={
            "candidates": [
                {"id": ada, "name": "Ada", "email": "ada@example.com"},
                {"id": alan, "name": "Alan"},
                {"id": ada, "name": "Ada Lovelace", "email": "ada@example.com"},
            ]
        },
        headers=_auth("recruiter", org=org),
    )

    assert response.status_code == 201
    assert response.json() == {"invited": 2}
    interview_id = InterviewId(str(created["id"]))
    assert await storage.is_invited(interview_id, UserId(ada))
    assert await storage.is_invited(interview_id, UserId(alan))
    assert not await storage.is_invited(interview_id, UserId(_fresh("nobody")))


async def test_invalid_invitations_are_422_with_paths(
    client: httpx.AsyncClient,
) -> None:
    org = _fresh("org")
    created = await _create(client, org)

    response = await client.post(
        f"/api/interviews/{created['id']}/invitations",
        json={
            "candidates": [
                {"id": "c1", "name": ""},
                {"id": "c2", "name": "Bo", "email": "not-an-email"},
                {"name": "No Id"},
            ]
        },
        headers=_auth("recruiter", org=org),
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    paths = {problem["path"] for problem in body["problems"]}
    assert paths == {"candidates.0.name", "candidates.1.email", "candidates.2.id"}


async def test_empty_invitation_list_is_422(client: httpx.AsyncClient) -> None:
    org = _fresh("org")
    created = await _create(client, org)

    response = await client.post(
        f"/api/interviews/{created['id']}/invitations",
        json={"candidates": []},
        headers=_auth("recruiter", org=org),
    )

    assert response.status_code == 422
    assert response.json()["problems"][0]["path"] == "candidates"


# -- the candidate's active session ---------------------------------------------------


async def test_candidate_without_an_attempt_has_no_active_session(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/interviews/active", headers=_auth("candidate"))

    assert response.status_code == 200
    assert response.json() == {"active_session": None, "server_time": START}


async def _start_attempt(
    client: httpx.AsyncClient, storage: DatabaseStorage, candidate: str
) -> tuple[SessionId, InterviewId]:
    org = _fresh("org")
    created = await _create(client, org)
    interview_id = InterviewId(str(created["id"]))
    record = await storage.get_interview(interview_id)
    assert record is not None
    session_id = SessionId(_fresh("session"))
    attempt = begin(
        session_id=session_id,
        interview_id=interview_id,
        title=record.definition.title,
        candidate_id=UserId(candidate),
        number=1,
        questions=record.definition.question_views(),
        grace_ms=record.definition.settings.grace_ms,
        now=START,
    )
    started = AuditEntry(
        at=START, actor=f"candidate:{candidate}", kind=AuditKind.STARTED
    )
    await storage.create_attempt(attempt, candidate_name="Ada", audit=[started])
    return session_id, interview_id


async def test_candidate_sees_the_attempt_in_progress(
    client: httpx.AsyncClient, storage: DatabaseStorage, clock: FakeClock
) -> None:
    candidate = _fresh("candidate")
    session_id, interview_id = await _start_attempt(client, storage, candidate)
    clock.now = START + 15_000

    response = await client.get(
        "/api/interviews/active", headers=_auth("candidate", sub=candidate)
    )

    assert response.status_code == 200
    assert response.json() == {
        "active_session": {
            "session_id": session_id,
            "interview_id": interview_id,
            "title": "Full Stack Developer Interview",
            "question_index": 0,
            "question_count": 6,
            "remaining_ms": 45_000,
        },
        "server_time": START + 15_000,
    }


async def test_questions_that_expired_unattended_are_skipped_in_the_report(
    client: httpx.AsyncClient, storage: DatabaseStorage, clock: FakeClock
) -> None:
    candidate = _fresh("candidate")
    await _start_attempt(client, storage, candidate)
    # Question 0 (60 s) closes at 62 s; question 1 (90 s) then runs until 152 s.
    clock.now = START + 62_000 + 10_000

    response = await client.get(
        "/api/interviews/active", headers=_auth("candidate", sub=candidate)
    )

    active = response.json()["active_session"]
    assert active["question_index"] == 1
    assert active["remaining_ms"] == 80_000


async def test_attempt_that_expired_to_the_end_is_not_active(
    client: httpx.AsyncClient, storage: DatabaseStorage, clock: FakeClock
) -> None:
    candidate = _fresh("candidate")
    await _start_attempt(client, storage, candidate)
    clock.now = START + 24 * 3600 * 1000

    response = await client.get(
        "/api/interviews/active", headers=_auth("candidate", sub=candidate)
    )

    assert response.json()["active_session"] is None
