"""The recruiter API of issue 11 on a real database (SQLite, or PostgreSQL with
DATABASE_URL): paged, filtered and sorted lists, invitations with their state,
revoking, archiving and the statistics."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret

from protocol.attempt import begin
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import InterviewDefinition
from protocol.ids import SessionId, UserId
from server.auth import issue_token
from server.candidate.scheduler import Scheduler
from server.cluster.lock import InProcessLock
from server.http import exception_handlers, middleware, routes
from server.services import Services
from server.settings import Settings
from server.storage.attempts import DatabaseStorage, Invitee
from server.storage.catalogue import Catalogue
from tests.integration._grading import GOOD_ANSWERS, Harness

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-long-enough-for-hs256"
Json = dict[str, Any]


def auth(role: str = "recruiter", *, org: str = "acme") -> dict[str, str]:
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


async def attempt(
    harness: Harness, candidate: str, name: str, answers: Sequence[str] = ()
) -> SessionId:
    """An attempt of ``candidate`` (started a second after the previous one) with
    ``answers`` committed and sent for grading."""
    harness.clock.now += 1_000
    started = begin(
        session_id=SessionId(uuid.uuid4().hex),
        interview_id=harness.interview.id,
        title=harness.interview.title,
        candidate_id=UserId(candidate),
        number=await harness.storage.count_attempts(
            harness.interview.id, UserId(candidate)
        )
        + 1,
        questions=harness.interview.questions,
        grace_ms=harness.interview.settings.grace_ms,
        now=harness.clock(),
    )
    entry = AuditEntry(harness.clock(), f"candidate:{candidate}", AuditKind.STARTED)
    await harness.storage.create_attempt(started, candidate_name=name, audit=[entry])
    current = started
    for text in answers:
        current = await harness.answer(current, text)
    return started.session_id


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Json:
    response = await client.get(path, params=params, headers=auth())
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def every_page(
    client: httpx.AsyncClient, path: str, key: str, **params: Any
) -> list[Json]:
    """Every row of a list, page by page, checking each page's size."""
    rows: list[Json] = []
    cursor: Any = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        body = await get(client, path, **query)
        page = body[key]
        assert isinstance(page, list)
        cursor = body["next"]
        assert len(page) == params["limit"] or cursor is None
        rows.extend(page)
        if cursor is None:
            return rows


# -- the sessions list -----------------------------------------------------------------


@pytest.fixture
async def five(harness: Harness) -> list[SessionId]:
    """Five attempts: Cleo and Ada evaluated (9.5 and 7.5), Bo completed but not
    graded yet, Dan and Eve in progress."""
    cleo = await attempt(harness, "cleo", "Cleo", GOOD_ANSWERS)
    ada = await attempt(harness, "ada", "Ada", ["a", *GOOD_ANSWERS[1:]])
    await harness.settle()
    bo = await attempt(harness, "bo", "Bo")
    bo_attempt = await harness.storage.load_attempt(bo)
    assert bo_attempt is not None
    for text in GOOD_ANSWERS:
        bo_attempt = await harness.answer(bo_attempt, text, enqueue=False)
    dan = await attempt(harness, "dan", "Dan")
    eve = await attempt(harness, "eve", "Eve", ["b"])
    await harness.settle()  # eve's first answer is graded
    return [cleo, ada, bo, dan, eve]


def ids(rows: Sequence[Json]) -> list[Any]:
    return [row["id"] for row in rows]


async def test_the_sessions_list_pages_through_every_attempt_once_in_order(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"

    rows = await every_page(client, path, "sessions", limit=2)

    assert ids(rows) == five  # by started_at
    assert [row["evaluation"] for row in rows] == [
        "evaluated",
        "evaluated",
        "pending",
        "pending",
        "pending",
    ]


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("candidate_name", "asc", ["ada", "bo", "cleo", "dan", "eve"]),
        ("candidate_name", "desc", ["eve", "dan", "cleo", "bo", "ada"]),
        ("started_at", "desc", ["eve", "dan", "bo", "ada", "cleo"]),
        # No score yet sorts below every score; ties go by id.
        ("score", "desc", ["cleo", "ada"]),
    ],
)
async def test_the_sessions_list_sorts_by_name_start_or_score_both_ways(
    client: httpx.AsyncClient,
    harness: Harness,
    five: list[SessionId],
    sort: str,
    order: str,
    expected: list[str],
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"

    rows = await every_page(client, path, "sessions", limit=2, sort=sort, order=order)

    candidates = [row["candidate_id"] for row in rows]
    assert candidates[: len(expected)] == expected
    assert sorted(ids(rows)) == sorted(five)


async def test_the_sessions_list_filters_by_status_grading_recommendation_candidate(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"
    cleo, ada, bo, dan, eve = five

    in_progress = await get(client, path, status="in_progress")
    finished = await client.get(
        path, params=[("status", "completed"), ("status", "evaluated")], headers=auth()
    )
    graded = await get(client, path, evaluation="evaluated")
    hired = await get(client, path, recommendation="hire")
    no_hire = await get(client, path, recommendation="no_hire")
    bo_only = await get(client, path, candidate="bo")

    assert ids(in_progress["sessions"]) == [dan, eve]
    assert ids(finished.json()["sessions"]) == [cleo, ada, bo]
    assert ids(graded["sessions"]) == [cleo, ada]
    assert ids(hired["sessions"]) == [cleo, ada]
    assert no_hire["sessions"] == []
    assert ids(bo_only["sessions"]) == [bo]


async def test_an_answer_that_needs_review_marks_its_attempt(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    await harness.storage.database.execute(
        "UPDATE answers SET evaluation_status = 'needs_review', score = NULL "
        f"WHERE session_id = '{five[1]}' AND question_index = 1"
    )
    path = f"/api/interviews/{harness.interview.id}/sessions"

    body = await get(client, path, evaluation="needs_review")

    assert ids(body["sessions"]) == [five[1]]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"sort": "salary"}, "sort"),
        ({"order": "up"}, "order"),
        ({"status": "lost"}, "status.0"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_a_wrong_query_of_the_sessions_list_is_422_at_its_path(
    client: httpx.AsyncClient, harness: Harness, query: dict[str, str], path: str
) -> None:
    response = await client.get(
        f"/api/interviews/{harness.interview.id}/sessions", params=query, headers=auth()
    )

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [problem["path"] for problem in body["problems"]] == [path]


async def test_a_cursor_of_another_order_is_refused(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"
    first = await get(client, path, limit=2, sort="candidate_name")

    response = await client.get(
        path,
        params={"cursor": str(first["next"]), "sort": "score"},
        headers=auth(),
    )

    assert response.status_code == 422
    assert "lists by candidate_name asc" in response.json()["message"]


async def test_an_attempt_started_meanwhile_is_neither_skipped_nor_repeated(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    path = f"/api/interviews/{harness.interview.id}/sessions"
    first = await get(client, path, limit=3)
    late = await attempt(harness, "zed", "Zed")

    rest = await get(client, path, limit=10, cursor=first["next"])

    assert ids(first["sessions"]) + ids(rest["sessions"]) == [*five, late]


# -- invitations -----------------------------------------------------------------------


async def test_invitations_carry_the_state_of_the_latest_attempt(
    client: httpx.AsyncClient, harness: Harness, five: list[SessionId]
) -> None:
    invitees = ["ada", "bo", "cleo", "dan", "fay"]
    await harness.storage.invite(
        harness.interview.id,
        [Invitee(UserId(c), c.title(), f"{c}@example.com") for c in invitees],
        harness.clock(),
    )
    path = f"/api/interviews/{harness.interview.id}/invitations"

    rows = await every_page(client, path, "invitations", limit=2)
    evaluated = await get(client, path, state="evaluated")

    states = {row["candidate_id"]: (row["state"], row["attempts"]) for row in rows}
    assert states == {
        "ada": ("evaluated", 1),
        "bo": ("completed", 1),
        "cleo": ("evaluated", 1),
        "dan": ("started", 1),
        "fay": ("invited", 0),
    }
    assert rows[0]["latest_session_id"] == five[1]
    assert rows[-1]["latest_session_id"] is None
    assert [row["candidate_id"] for row in evaluated["invitations"]] == ["ada", "cleo"]


async def test_a_new_attempt_after_an_evaluated_one_is_started(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    await harness.storage.invite(
        harness.interview.id, [Invitee(UserId("ada"), "Ada", None)], 1
    )
    await attempt(harness, "ada", "Ada", GOOD_ANSWERS)
    await harness.settle()
    second = await attempt(harness, "ada", "Ada")
    path = f"/api/interviews/{harness.interview.id}/invitations"

    [row] = (await get(client, path))["invitations"]

    assert (row["state"], row["attempts"], row["latest_session_id"]) == (
        "started",
        2,
        second,
    )


async def test_a_revoked_invitation_is_listed_revoked_and_restored_by_inviting_again(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    interview = harness.interview.id
    path = f"/api/interviews/{interview}/invitations"
    invite = {"candidates": [{"id": "ada", "name": "Ada"}, {"id": "bo", "name": "Bo"}]}
    assert (await client.post(path, json=invite, headers=auth())).status_code == 201
    harness.clock.now += 5

    revoked = await client.post(
        f"{path}/revoke", json={"candidate_id": "ada"}, headers=auth("admin")
    )
    harness.clock.now += 5
    again = await client.post(
        f"{path}/revoke", json={"candidate_id": "ada"}, headers=auth()
    )
    standing = await get(client, path, revoked="false")
    invited = await harness.storage.is_invited(interview, UserId("ada"))
    await client.post(path, json=invite, headers=auth())
    restored = await harness.storage.is_invited(interview, UserId("ada"))

    assert revoked.status_code == 200
    body = revoked.json()
    assert (body["candidate_id"], body["revoked_by"]) == ("ada", "admin:rita")
    assert again.json()["revoked_at"] == body["revoked_at"]  # the first one stays
    assert [row["candidate_id"] for row in standing["invitations"]] == ["bo"]
    assert (invited, restored) == (False, True)


async def test_revoking_a_candidate_who_is_not_invited_is_404(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    response = await client.post(
        f"/api/interviews/{harness.interview.id}/invitations/revoke",
        json={"candidate_id": "nobody"},
        headers=auth(),
    )

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# -- interviews: archive, list ---------------------------------------------------------


async def test_archiving_keeps_the_first_time_and_unarchiving_clears_it(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    path = f"/api/interviews/{harness.interview.id}"
    harness.clock.now = 5_000
    archived = await client.post(f"{path}/archive", headers=auth())
    harness.clock.now = 9_000
    again = await client.post(f"{path}/archive", headers=auth())
    shown = await get(client, path)
    stored = await harness.storage.archived_at(harness.interview.id)
    cleared = await client.delete(f"{path}/archive", headers=auth())

    assert archived.json()["archived_at"] == 5_000
    assert again.json()["archived_at"] == 5_000
    assert (shown["archived_at"], stored) == (5_000, 5_000)
    assert cleared.json()["archived_at"] is None
    assert await harness.storage.archived_at(harness.interview.id) is None


async def test_the_interviews_list_filters_archived_ones_and_pages_by_title(
    client: httpx.AsyncClient, harness: Harness, definition: InterviewDefinition
) -> None:
    titles = ["Delta", "Alpha", "Charlie", "Bravo"]
    created = {}
    for n, title in enumerate(titles):
        record = await harness.storage.create_interview(
            org="acme",
            created_by=UserId("rita"),
            definition=definition.model_copy(update={"title": title}),
            now=100 + n,
        )
        created[title] = record.id
    await client.post(f"/api/interviews/{created['Alpha']}/archive", headers=auth())

    by_title = await every_page(
        client, "/api/interviews", "interviews", limit=2, sort="title", order="desc"
    )
    archived = await get(client, "/api/interviews", archived="true")
    current = await get(client, "/api/interviews", archived="false")

    assert [row["title"] for row in by_title] == [
        "Delta",
        "Charlie",
        "Bravo",
        "Backend developer",
        "Alpha",
    ]
    assert [row["id"] for row in archived["interviews"]] == [created["Alpha"]]
    assert created["Alpha"] not in [row["id"] for row in current["interviews"]]
    assert len(current["interviews"]) == 4


# -- statistics ------------------------------------------------------------------------


async def test_the_statistics_follow_moodles_definitions_over_evaluated_attempts(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    # Graded by the fake grader: MCQ 2 or 0 of 2, the others half their points.
    strong = await attempt(harness, "ada", "Ada", GOOD_ANSWERS)
    weak = await attempt(harness, "bo", "Bo", ["a", *GOOD_ANSWERS[1:]])
    await harness.settle()
    await harness.service.override(
        harness.interview.id, weak, 2, score=1.0, note="", by="recruiter:rita"
    )
    await attempt(harness, "cy", "Cy", ["b"])  # in progress: not counted
    await harness.settle()
    path = f"/api/interviews/{harness.interview.id}/statistics"

    body = await get(client, path)

    # ada (2, 2.5, 5) = 9.5 of 17; bo (0, 2.5, 1) = 3.5.
    assert (body["count"], body["max_score"], body["mean_score"]) == (2, 17, 6.5)
    mcq, short, code = body["questions"]
    assert (mcq["facility"], mcq["mean_score"], mcq["discrimination"]) == (
        50.0,
        1.0,
        pytest.approx(100.0),
    )
    assert mcq["standard_deviation"] == pytest.approx(100 * 2**0.5 / 2)
    assert (short["facility"], short["standard_deviation"]) == (50.0, 0.0)
    assert short["discrimination"] is None  # everyone scored alike
    assert code["facility"] == pytest.approx(30.0)
    counts = [bucket["count"] for bucket in body["histogram"]]
    assert counts == [0, 0, 1, 0, 0, 1, 0, 0, 0, 0]  # 20.6 % and 55.9 %
    assert strong != weak


async def test_the_statistics_count_first_attempts_unless_asked_for_all(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    await attempt(harness, "ada", "Ada", ["a", *GOOD_ANSWERS[1:]])
    await harness.settle()
    await attempt(harness, "ada", "Ada", GOOD_ANSWERS)
    await harness.settle()
    path = f"/api/interviews/{harness.interview.id}/statistics"

    first = await get(client, path)
    every = await get(client, path, attempts="all")

    assert (first["sample"], first["count"], first["mean_score"]) == ("first", 1, 7.5)
    assert (every["sample"], every["count"], every["mean_score"]) == ("all", 2, 8.5)


async def test_an_interview_without_graded_attempts_has_empty_statistics(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    body = await get(client, f"/api/interviews/{harness.interview.id}/statistics")

    assert body["count"] == 0
    assert body["mean_score"] is None
    assert [q["facility"] for q in body["questions"]] == [None, None, None]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "/statistics"),
        ("GET", "/invitations"),
        ("POST", "/archive"),
        ("DELETE", "/archive"),
    ],
)
async def test_another_organisations_interview_is_404_on_the_new_routes(
    client: httpx.AsyncClient, harness: Harness, method: str, suffix: str
) -> None:
    path = f"/api/interviews/{harness.interview.id}{suffix}"

    response = await client.request(method, path, headers=auth(org="globex"))

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_an_attempt_with_an_unscored_answer_waits_outside_the_statistics(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    scored = await attempt(harness, "ada", "Ada", GOOD_ANSWERS)
    unscored = await attempt(harness, "bo", "Bo", GOOD_ANSWERS)
    await harness.settle()
    await harness.storage.database.execute(
        "UPDATE answers SET evaluation_status = 'needs_review', score = NULL "
        f"WHERE session_id = '{unscored}' AND question_index = 2"
    )
    path = f"/api/interviews/{harness.interview.id}/statistics"

    waiting = await get(client, path)
    await harness.service.override(
        harness.interview.id, unscored, 2, score=4.0, note="", by="recruiter:rita"
    )
    counted = await get(client, path)

    assert (waiting["count"], waiting["mean_score"]) == (1, 9.5)
    assert (counted["count"], counted["mean_score"]) == (2, (9.5 + 8.5) / 2)
    assert scored != unscored
