"""The recruiter monitor socket against a real server (PROTOCOL.md section 2).

A candidate takes an interview over ``/ws/candidate`` while recruiters watch it over
``/ws/monitor``: the snapshot, the events in cursor order, a reconnect with ``since``
that replays exactly what was missed, and the refusals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from protocol.attempt import Status
from protocol.events import EventKind, News
from protocol.ids import InterviewId, Millis, SessionId
from server.auth import issue_token
from server.storage.events import PAGE, EventLog, append
from tests.e2e._client import UNIT_S, Candidate, Frame, eventually
from tests.e2e.conftest import SECRET, Server, make_settings, served

pytestmark = pytest.mark.e2e


def staff_token(
    sub: str = "rita", *, role: str = "recruiter", org: str = "acme"
) -> str:
    return issue_token(
        SECRET, sub=sub, role=role, name=f"Staff {sub}", org=org, now_s=time.time()
    )


def monitor_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/monitor"


async def monitor(server: Server, token: str | None = None) -> Candidate:
    client = await Candidate.open(monitor_url(server))
    await client.login(token or staff_token())
    return client


async def subscribe(
    client: Candidate, interview_id: InterviewId, since: int | None = None
) -> Frame:
    frame: Frame = {"type": "subscribe", "interview_id": interview_id}
    if since is not None:
        frame["since"] = since
    await client.send(frame)
    return await client.expect("snapshot")


async def events_until(
    client: Candidate, kind: str, session: str | None = None
) -> list[Frame]:
    """Every event up to and including the first of ``kind`` (of ``session``)."""
    seen: list[Frame] = []
    while True:
        frame = await client.expect("event", timeout=3 * UNIT_S)
        seen.append(frame)
        if frame["kind"] == kind and session in (None, frame["session_id"]):
            return seen


async def settled_head(server: Server, interview: InterviewId) -> int:
    """The interview's last cursor once every event stored so far is numbered
    (numbering follows each commit by a moment)."""
    log = EventLog(server.storage.database)

    async def numbered() -> bool:
        return interview not in await log.unnumbered()

    await eventually(numbered)
    return (await log.head(interview)).last


def assert_in_order(events: list[Frame], after: int) -> None:
    cursors = [event["cursor"] for event in events]
    assert cursors == list(range(after + 1, after + 1 + len(events))), cursors


@pytest.fixture
async def graded(database_url: str) -> AsyncIterator[Server]:
    """A server with a long auth deadline and an answerable MCQ interview."""
    async with served(make_settings(database_url)) as server:
        yield server


async def take(server: Server, interview: InterviewId, sub: str = "alice") -> str:
    """A candidate starts ``interview`` and answers its one question; the session,
    once graded."""
    candidate = await server.candidate(sub)
    await candidate.send({"type": "start", "interview_id": interview})
    state = await candidate.expect("state")
    await candidate.send({"type": "answer", "question_index": 0, "answer": "b"})
    await candidate.expect("answer_ack")
    await candidate.expect("completed")
    await candidate.closed()
    session = SessionId(state["session_id"])

    async def graded() -> bool:
        attempt = await server.storage.load_attempt(session)
        return attempt is not None and attempt.status is Status.EVALUATED

    await eventually(graded, timeout=3 * UNIT_S)
    return session


async def test_a_recruiter_sees_an_attempt_live_from_start_to_grade(
    server: Server,
) -> None:
    interview = await server.interview([60])
    watcher = await monitor(server)
    assert watcher.hello["user"]["role"] == "recruiter"
    snapshot = await subscribe(watcher, interview)
    assert snapshot == snapshot | {
        "interview_id": interview,
        "cursor": 0,
        "recovered": False,
        "sessions": [],
    }

    session = await take(server, interview)
    events = await events_until(watcher, "evaluated", session)

    assert_in_order(events, snapshot["cursor"])
    kinds = [event["kind"] for event in events]
    for kind in ("started", "question_started", "connected", "answer_submitted"):
        assert kind in kinds
    assert kinds.index("answer_submitted") < kinds.index("completed")
    assert kinds.index("answer_evaluated") < kinds.index("evaluated")
    assert {event["session_id"] for event in events} == {session}
    started = events[kinds.index("question_started")]["data"]
    assert started["question_index"] == 0
    assert started["deadline"] > started["time_limit_s"]
    evaluated = events[-1]["data"]
    assert evaluated["final_score"] == evaluated["max_score"] == 5
    assert evaluated["recommendation"] in {"strong_hire", "hire", "maybe", "no_hire"}
    for event in events:  # no answer text, key or draft in any event
        assert "b" not in {str(value) for value in event["data"].values()}
    await watcher.close()


async def test_the_snapshot_shows_who_is_connected_and_the_time_left(
    server: Server,
) -> None:
    interview = await server.interview([60, 60])
    candidate = await server.candidate()
    await candidate.send({"type": "start", "interview_id": interview})
    state = await candidate.expect("state")
    await candidate.send({"type": "signal", "kind": "paste"})

    await candidate.ping()  # the signal was handled before the pong
    await settled_head(server, interview)  # and stored
    watcher = await monitor(server)
    snapshot = await subscribe(watcher, interview)

    [row] = snapshot["sessions"]
    assert row == row | {
        "session_id": state["session_id"],
        "candidate": {"id": "alice", "name": "User alice"},
        "status": "in_progress",
        "question_index": 0,
        "question_count": 2,
        "connected": True,
        "score": None,
        "max_score": 10,
        "recommendation": None,
        "flags": ["paste"],
    }
    assert 0 < row["remaining_ms"] <= 60_000
    assert row["remaining_ms"] >= state["remaining_ms"] - 60_000

    await candidate.close()
    disconnected = await events_until(watcher, "disconnected")
    assert disconnected[-1]["session_id"] == state["session_id"]
    again = await subscribe(watcher, interview)
    assert again["sessions"][0]["connected"] is False
    await watcher.close()


async def test_a_monitor_coming_back_with_its_cursor_gets_exactly_what_it_missed(
    server: Server,
) -> None:
    interview = await server.interview([60], invite=("alice", "bob"))
    first = await monitor(server)
    await subscribe(first, interview)
    seen = await events_until(first, "evaluated", await take(server, interview))
    last = seen[-1]["cursor"]
    await first.close()

    missed_session = await take(server, interview, "bob")  # while nobody watches
    head = await settled_head(server, interview)
    assert head > last

    second = await monitor(server)
    snapshot = await subscribe(second, interview, since=last)
    assert snapshot["recovered"] is True
    assert snapshot["cursor"] == last
    assert len(snapshot["sessions"]) == 2
    replayed = [await second.expect("event") for _ in range(head - last)]
    assert_in_order(replayed, last)
    assert {event["session_id"] for event in replayed} == {missed_session}
    assert replayed[-1]["kind"] == "evaluated"
    await second.close()


@pytest.mark.parametrize("since", ["future", "pruned"])
async def test_a_cursor_the_log_cannot_serve_gets_the_snapshot_alone(
    server: Server, since: str
) -> None:
    interview = await server.interview([60])
    await take(server, interview)
    log = EventLog(server.storage.database)
    head = await settled_head(server, interview)
    if since == "pruned":
        await log.prune(int(time.time() * 1000), max_age_ms=10**12, max_count=2)
    cursor = head + 5 if since == "future" else 1

    watcher = await monitor(server)
    snapshot = await subscribe(watcher, interview, since=cursor)

    assert snapshot["recovered"] is False
    assert snapshot["cursor"] == head
    assert snapshot["sessions"][0]["status"] == "evaluated"
    await watcher.ping()  # and no replay came before the pong
    await watcher.close()


async def test_two_subscriptions_on_one_connection_and_unsubscribe(
    server: Server,
) -> None:
    one = await server.interview([60])
    two = await server.interview([60])
    watcher = await monitor(server)
    await subscribe(watcher, one)
    await subscribe(watcher, two)
    await watcher.send({"type": "unsubscribe", "interview_id": one})
    await watcher.ping()  # the unsubscribe is handled before what follows

    await take(server, one)
    await take(server, two)
    events = await events_until(watcher, "evaluated")
    assert {event["interview_id"] for event in events} == {two}
    await watcher.close()


async def test_an_interview_of_another_organisation_is_not_found(
    server: Server,
) -> None:
    interview = await server.interview([60])
    stranger = await monitor(server, staff_token("eve", org="globex"))
    await stranger.send({"type": "subscribe", "interview_id": interview})
    await stranger.expect_error("not_found")
    await stranger.send({"type": "subscribe", "interview_id": "no-such-interview"})
    await stranger.expect_error("not_found")
    await stranger.ping()  # still served
    admin = await monitor(server, staff_token("ada", role="admin"))
    assert (await subscribe(admin, interview))["interview_id"] == interview
    await stranger.close()
    await admin.close()


async def test_only_staff_may_watch(server: Server) -> None:
    client = await Candidate.open(monitor_url(server))
    await client.send({"type": "auth", "token": server.token("alice")})
    assert await client.closed() == 4403

    client = await Candidate.open(monitor_url(server))
    await client.send({"type": "auth", "token": "not-a-token"})
    await client.expect_error("unauthenticated")
    assert await client.closed() == 4401

    client = await Candidate.open(monitor_url(server))
    await client.send({"type": "subscribe", "interview_id": "x"})
    await client.expect_error("unauthenticated")
    assert await client.closed() == 4401


async def test_bad_frames_get_errors_and_the_monitor_keeps_serving(
    server: Server,
) -> None:
    watcher = await monitor(server)
    for bad in ("not json", '{"type": "start"}', '{"type": "subscribe"}'):
        await watcher.send_raw(bad)
        await watcher.expect_error("bad_frame")
    await watcher.send({"type": "subscribe", "interview_id": "x", "since": -1})
    await watcher.expect_error("bad_frame")
    await watcher.ping()
    await watcher.close()


async def test_a_monitor_gone_during_a_long_replay_is_let_go(database_url: str) -> None:
    """Between pages the handler waits for the send queue to drain: a peer that is
    gone never drains it, and the connection must still end (and be counted)."""
    settings = make_settings(database_url, monitor_queue_max=2 * PAGE)
    async with served(settings) as server:
        interview = await server.interview([60])
        session = SessionId("s-long-log")
        news = [
            (interview, News(session, EventKind.SIGNAL, Millis(at), {"kind": "blur"}))
            for at in range(20 * PAGE)
        ]
        database = server.storage.database
        async with database.transaction() as connection:
            await append(connection, news, sqlite=database.is_sqlite)
        await EventLog(database).number([interview])

        watcher = await monitor(server)
        await watcher.send({"type": "subscribe", "interview_id": interview, "since": 0})
        watcher.ws.transport.abort()  # gone mid-replay, without a close handshake

        async with httpx.AsyncClient(base_url=server.http) as http:

            async def let_go() -> bool:
                metrics = (await http.get("/metrics")).text
                return 'interview_socket_closes_total{code="1006"} 1.0' in metrics

            await eventually(let_go)
