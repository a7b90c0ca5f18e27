"""The results API (server/http/results.py) on a real database and a fake grader."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret

from protocol.audit import AuditEntry, AuditKind, text_digest
from protocol.definition import InterviewDefinition
from protocol.ids import SessionId, UserId
from server.auth import issue_token
from server.candidate.scheduler import Scheduler
from server.cluster.lock import InProcessLock
from server.http import exception_handlers, middleware, routes
from server.services import Services
from server.settings import Settings
from server.storage.attempts import DatabaseStorage
from server.storage.catalogue import Catalogue
from tests.integration._grading import Harness

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-long-enough-for-hs256"


def auth(role: str = "recruiter", *, org: str | None = "acme") -> dict[str, str]:
    token = issue_token(
        SECRET, sub="rita", role=role, name="Rita", org=org, now_s=time.time()
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def harness(storage: DatabaseStorage, definition: InterviewDefinition) -> Harness:
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=1
    )
    running = Harness(storage, interview)
    await running.queue.broker.startup()
    return running


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=routes(), middleware=middleware, exception_handlers=exception_handlers
    )
    app.state.services = Services(
        settings=Settings(jwt_secret=Secret(SECRET)),
        clock=harness.clock,
        storage=harness.storage,
        results=harness.results,
        catalogue=Catalogue(harness.storage.database),
        lock=InProcessLock(),
        bus=harness.bus,
        grading=harness.service,
        scheduler=Scheduler(harness.clock),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def evaluated(harness: Harness) -> SessionId:
    session_id = await harness.complete()
    await harness.settle()
    return session_id


async def test_the_session_list_has_scores_and_no_answers(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"
    response = await client.get(path, headers=auth())

    assert response.status_code == 200
    [session] = response.json()["sessions"]
    assert session["id"] == evaluated
    assert session["status"] == "evaluated"
    assert (session["final_score"], session["max_score"]) == (9.5, 17)
    assert session["recommendation"] == "hire"
    assert "answers" not in session


async def test_the_session_detail_has_answers_grades_audit_and_summary(
    client: httpx.AsyncClient, evaluated: SessionId
) -> None:
    response = await client.get(f"/api/sessions/{evaluated}", headers=auth("admin"))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "evaluated"
    assert body["summary"] == "A fake summary of Backend developer."
    assert [answer["score"] for answer in body["answers"]] == [2, 2.5, 5]
    assert body["answers"][1]["feedback"] == {"strengths": ["fake"]}
    assert body["answers"][1]["model"] == "fake"
    assert body["audit"][0]["kind"] == "started"


@pytest.mark.parametrize(
    "headers",
    [auth(org="globex"), auth("admin", org="globex")],
    ids=["recruiter", "admin"],
)
async def test_another_organisations_results_are_not_found(
    client: httpx.AsyncClient,
    harness: Harness,
    evaluated: SessionId,
    headers: dict[str, str],
) -> None:
    interview = harness.interview.id
    override = {"score": 1, "note": ""}
    answers = [
        await client.get(f"/api/interviews/{interview}/sessions", headers=headers),
        await client.get(f"/api/interviews/{interview}/results.csv", headers=headers),
        await client.get(f"/api/sessions/{evaluated}", headers=headers),
        await client.post(
            f"/api/sessions/{evaluated}/answers/0/override",
            json=override,
            headers=headers,
        ),
        await client.post(f"/api/sessions/{evaluated}/reevaluate", headers=headers),
        await client.get("/api/sessions/no-such-session", headers=auth()),
    ]
    assert [response.status_code for response in answers] == [404] * 6


async def test_candidates_may_not_read_results(
    client: httpx.AsyncClient, evaluated: SessionId
) -> None:
    response = await client.get(f"/api/sessions/{evaluated}", headers=auth("candidate"))
    assert response.status_code == 403


async def test_an_override_answers_the_updated_session(
    client: httpx.AsyncClient, evaluated: SessionId
) -> None:
    response = await client.post(
        f"/api/sessions/{evaluated}/answers/2/override",
        json={"score": 10, "note": "tests pass"},
        headers=auth(),
    )

    assert response.status_code == 200
    body = response.json()
    assert body["final_score"] == 14.5
    code = body["answers"][2]
    assert (code["score"], code["model_score"], code["overridden_by"]) == (
        10,
        5,
        "recruiter:rita",
    )
    assert body["audit"][-1]["kind"] == "score_overridden"


@pytest.mark.parametrize(
    "body",
    [
        {"score": 10.5},
        {"score": -1},
        {"score": "7"},
        {"note": "x"},
        [],
        {"score": 1, "x": 1},
    ],
)
async def test_an_override_out_of_range_or_malformed_is_refused(
    client: httpx.AsyncClient, evaluated: SessionId, body: object
) -> None:
    path = f"/api/sessions/{evaluated}/answers/2/override"
    response = await client.post(path, json=body, headers=auth())
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


async def test_an_override_of_a_question_that_does_not_exist_is_not_found(
    client: httpx.AsyncClient, evaluated: SessionId
) -> None:
    for index in ("3", "-1", "x"):
        path = f"/api/sessions/{evaluated}/answers/{index}/override"
        response = await client.post(path, json={"score": 1}, headers=auth())
        assert response.status_code == 404


@pytest.mark.parametrize(
    "index",
    ["\u00b2", "\u0661", "9" * 5_000, "+1", " 1", "1.0"],
    ids=["superscript-two", "arabic-one", "5000-digits", "plus", "space", "float"],
)
async def test_an_override_index_that_is_not_plain_digits_is_not_found(
    client: httpx.AsyncClient, evaluated: SessionId, index: str
) -> None:
    path = f"/api/sessions/{evaluated}/answers/{quote(index)}/override"
    response = await client.post(path, json={"score": 1}, headers=auth())

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"score": 1, "note": ' + b"[" * 250 + b"]" * 250 + b"}",
        b'{"score": 1, "note": "\\ud800"}',
        b'{"score": 1, "note": "a\\u0000b"}',
    ],
    ids=["deep", "deep-field", "lone-surrogate", "nul"],
)
async def test_an_override_body_that_no_database_could_store_is_400(
    client: httpx.AsyncClient, evaluated: SessionId, body: bytes
) -> None:
    path = f"/api/sessions/{evaluated}/answers/2/override"
    response = await client.post(path, content=body, headers=auth())

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


@pytest.mark.parametrize("session", ["%00", "a%00b", "x" * 65, "%C2%B2"])
async def test_a_session_id_no_server_could_make_is_not_found(
    client: httpx.AsyncClient, evaluated: SessionId, session: str
) -> None:
    for response in [
        await client.get(f"/api/sessions/{session}", headers=auth()),
        await client.get(f"/api/sessions/{session}/audit", headers=auth()),
        await client.post(f"/api/sessions/{session}/reevaluate", headers=auth()),
        await client.post(
            f"/api/sessions/{session}/answers/0/override",
            json={"score": 1},
            headers=auth(),
        ),
    ]:
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"


async def test_an_override_of_a_question_not_answered_yet_is_not_found(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    attempt = await harness.start()

    path = f"/api/sessions/{attempt.session_id}/answers/0/override"
    response = await client.post(path, json={"score": 1}, headers=auth())

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": "no answer to question 0",
    }


async def test_reevaluation_is_accepted_and_grades_again(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    response = await client.post(
        f"/api/sessions/{evaluated}/reevaluate", headers=auth()
    )

    assert response.status_code == 202
    assert response.json() == {"session_id": evaluated, "status": "completed"}
    await harness.settle()
    detail = await harness.detail(evaluated)
    assert detail.session.status == "evaluated"
    assert len(harness.grader.summarised) == 2


async def test_an_attempt_in_progress_cannot_be_reevaluated(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    attempt = await harness.start()
    path = f"/api/sessions/{attempt.session_id}/reevaluate"
    response = await client.post(path, headers=auth())
    assert response.status_code == 409


async def test_the_results_csv_lists_every_attempt(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    other = await harness.start("=cmd|' /C calc'!A0")
    path = f"/api/interviews/{harness.interview.id}/results.csv"
    response = await client.get(path, headers=auth())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["session_id"] for row in rows] == [evaluated, other.session_id]
    first, second = rows
    assert (first["status"], first["final_score"], first["max_score"]) == (
        "evaluated",
        "9.5",
        "17.0",
    )
    assert first["recommendation"] == "hire"
    assert (second["status"], second["final_score"]) == ("in_progress", "")
    assert second["candidate_id"] == "'=cmd|' /C calc'!A0"


# -- the audit log, page by page -------------------------------------------------------


def signals(count: int, *, at: int = 10) -> list[AuditEntry]:
    return [
        AuditEntry(at + n, "candidate:c", AuditKind.SIGNAL, {"signal": "copy", "n": n})
        for n in range(count)
    ]


def lines(entries: list[AuditEntry]) -> list[dict[str, object]]:
    return [
        {"at": e.at, "actor": e.actor, "kind": e.kind.value, "data": dict(e.data)}
        for e in entries
    ]


async def read_pages(
    client: httpx.AsyncClient, session_id: SessionId, cursor: str | None, limit: int
) -> list[dict[str, object]]:
    """Every page after ``cursor``, checking that each has its ``limit``."""
    read: list[dict[str, object]] = []
    while cursor is not None:
        path = f"/api/sessions/{session_id}/audit?after={cursor}&limit={limit}"
        response = await client.get(path, headers=auth())
        assert response.status_code == 200
        body = response.json()
        assert body["session_id"] == session_id
        cursor = body["next"]
        assert len(body["audit"]) == limit or cursor is None
        read.extend(body["audit"])
    return read


async def test_the_session_detail_holds_the_first_audit_page_and_a_cursor(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    await harness.storage.append_audit(evaluated, signals(450))
    stored = await harness.storage.audit_log(evaluated)

    body = (await client.get(f"/api/sessions/{evaluated}", headers=auth())).json()

    assert body["audit"] == lines(stored[:200])
    assert body["audit_next"] is not None
    rest = await read_pages(client, evaluated, body["audit_next"], 64)
    assert body["audit"] + rest == lines(stored)  # none skipped, none repeated


async def test_a_short_audit_log_fits_the_detail_without_a_cursor(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    body = (await client.get(f"/api/sessions/{evaluated}", headers=auth())).json()

    assert body["audit"] == lines(await harness.storage.audit_log(evaluated))
    assert body["audit_next"] is None
    assert body["late_answers"] == []


async def test_an_audit_cursor_stays_valid_while_entries_are_added(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    await harness.storage.append_audit(evaluated, signals(30))
    path = f"/api/sessions/{evaluated}/audit?limit=20"
    first = (await client.get(path, headers=auth())).json()
    await harness.storage.append_audit(evaluated, signals(30, at=100))

    rest = await read_pages(client, evaluated, first["next"], 20)

    stored = await harness.storage.audit_log(evaluated)
    assert first["audit"] + rest == lines(stored)


async def test_an_audit_page_is_capped_and_its_parameters_checked(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    await harness.storage.append_audit(evaluated, signals(1_100))
    path = f"/api/sessions/{evaluated}/audit"

    capped = await client.get(f"{path}?limit={'9' * 40}", headers=auth())
    refused = [
        await client.get(f"{path}?{query}", headers=auth())
        for query in ["limit=0", "limit=-3", "limit=ten", "after=x", "after=-1"]
    ]

    assert len(capped.json()["audit"]) == 1_000
    assert [response.status_code for response in refused] == [422] * 5
    assert refused[0].json()["error"] == "invalid_request"


async def test_another_organisations_audit_log_is_not_found(
    client: httpx.AsyncClient, evaluated: SessionId
) -> None:
    answers = [
        await client.get(f"/api/sessions/{evaluated}/audit", headers=auth(org="x")),
        await client.get(
            f"/api/sessions/{evaluated}/audit?after=1", headers=auth("admin", org="x")
        ),
        await client.get("/api/sessions/no-such-session/audit", headers=auth()),
    ]
    forbidden = await client.get(
        f"/api/sessions/{evaluated}/audit", headers=auth("candidate")
    )

    assert [response.status_code for response in answers] == [404] * 3
    assert forbidden.status_code == 403


async def test_the_session_detail_counts_late_answers_per_question(
    client: httpx.AsyncClient, harness: Harness, evaluated: SessionId
) -> None:
    late = [
        AuditEntry(
            20 + n,
            "candidate:c",
            AuditKind.LATE_ANSWER,
            {"question_index": 1, "text": "é" * 150_000},
        )
        for n in range(3)
    ]
    await harness.storage.append_audit(evaluated, late)

    body = (await client.get(f"/api/sessions/{evaluated}", headers=auth())).json()

    assert body["late_answers"] == [
        {
            "question_index": 1,
            "received": 3,
            "received_chars": 450_000,
            "kept": 1,
            "kept_chars": 150_000,
            "last_at": 22,
            "last_chars": 150_000,
            "last_sha256": text_digest("é" * 150_000),
        }
    ]
    kept = [line for line in body["audit"] if line["kind"] == "late_answer"]
    assert [line["data"].get("text_kept", True) for line in kept] == [True, False]
