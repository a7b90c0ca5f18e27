"""``resume{lease}``: the client back after losing its connection re-attaches at once
(PROTOCOL.md section 1, "Single connection"), on the embedded default and on Redis.

Each test runs twice: with the in-process lock, and with the Redis lock and bus
(``REDIS_URL``, else a private ``redis-server``); the database is the test's
(PostgreSQL with ``DATABASE_URL``). The crash across two instances is in
``test_multi_instance.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from protocol.audit import AuditEntry, AuditKind
from protocol.ids import SessionId
from tests.e2e._client import Candidate, Frame, eventually
from tests.e2e.conftest import Server, make_settings, served

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "redis"])
async def server(
    request: pytest.FixtureRequest, database_url: str
) -> AsyncIterator[Server]:
    overrides: dict[str, object] = {}
    if request.param == "redis":
        overrides = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    async with served(make_settings(database_url, **overrides)) as running:
        yield running


async def started(server: Server, sub: str = "alice") -> tuple[Candidate, Frame]:
    """A candidate attached to a new attempt, and its first ``state``."""
    interview = await server.interview([60, 60], invite=(sub,))
    client = await server.candidate(sub)
    await client.send({"type": "start", "interview_id": interview})
    return client, await client.expect("state")


async def closed(client: Candidate, server: Server, session_id: str) -> None:
    """Close ``client`` and wait until the server let go of its attempt."""
    await client.close()

    async def detached() -> bool:
        log = await server.storage.audit_log(SessionId(session_id))
        return any(e.kind is AuditKind.DETACHED for e in log)

    await eventually(detached)


async def attaches(server: Server, session_id: str) -> list[AuditEntry]:
    log = await server.storage.audit_log(SessionId(session_id))
    return [e for e in log if e.kind in (AuditKind.ATTACHED, AuditKind.TAKEN_OVER)]


async def test_every_state_carries_a_lease_and_each_attach_gets_a_new_one(
    server: Server,
) -> None:
    first, state = await started(server)
    await first.send({"type": "answer", "question_index": 0, "answer": "b"})
    await first.expect("answer_ack")
    following = await first.expect("state")
    await closed(first, server, state["session_id"])

    again = await server.candidate()
    await again.send({"type": "resume"})
    resumed = await again.expect("state")

    assert isinstance(state["lease"], str) and len(state["lease"]) >= 32
    assert following["lease"] == state["lease"]
    assert resumed["lease"] != state["lease"]


async def test_the_lease_takes_over_the_clients_old_connection_at_once(
    server: Server,
) -> None:
    old, state = await started(server)

    back = await server.candidate()
    await back.send({"type": "resume", "lease": state["lease"]})
    resumed = await back.expect("state")

    assert resumed["session_id"] == state["session_id"]
    assert resumed["deadline"] == state["deadline"]
    frames, code = await old.frames_until_close()
    assert [f["type"] for f in frames] == ["superseded"] and code == 4409
    await back.send({"type": "answer", "question_index": 0, "answer": "b"})
    assert (await back.expect("answer_ack"))["status"] == "accepted"
    entries = await attaches(server, state["session_id"])
    assert [(e.kind, e.data) for e in entries] == [
        (AuditKind.ATTACHED, {}),
        (AuditKind.ATTACHED, {"lease": True, "taken_over": True}),
    ]


async def test_a_lease_that_someone_attached_since_is_locked_out(
    server: Server,
) -> None:
    first, state = await started(server)
    second = await server.candidate()
    await second.send({"type": "resume", "takeover": True})
    await second.expect("state")
    assert await first.closed() == 4409

    third = await server.candidate()
    await third.send({"type": "resume", "lease": state["lease"]})
    await third.expect_error("session_locked")

    await second.ping()  # still attached
    await third.send({"type": "resume", "lease": state["lease"], "takeover": True})
    assert (await third.expect("state"))["session_id"] == state["session_id"]
    assert await second.closed() == 4409
    kinds = [e.kind for e in await attaches(server, state["session_id"])]
    assert kinds == [AuditKind.ATTACHED, AuditKind.TAKEN_OVER, AuditKind.TAKEN_OVER]


@pytest.mark.parametrize(
    "forge",
    [
        lambda lease: lease[:-1] + ("A" if lease[-1] != "A" else "B"),
        lambda lease: "",
        lambda lease: "1",
        lambda lease: lease.upper(),
    ],
    ids=["one-character-changed", "empty", "epoch", "upper-case"],
)
async def test_a_forged_lease_is_locked_out(
    server: Server, forge: Callable[[str], str]
) -> None:
    first, state = await started(server)

    other = await server.candidate()
    await other.send({"type": "resume", "lease": forge(state["lease"])})
    await other.expect_error("session_locked")

    await first.ping()  # still attached
    kinds = [e.kind for e in await attaches(server, state["session_id"])]
    assert kinds == [AuditKind.ATTACHED]


async def test_another_candidates_lease_is_refused(server: Server) -> None:
    alice, alices = await started(server, "alice")
    bob, bobs = await started(server, "bob")

    bob_again = await server.candidate("bob")
    await bob_again.send({"type": "resume", "lease": alices["lease"]})
    await bob_again.expect_error("session_locked")
    carol = await server.candidate("carol")
    await carol.send({"type": "resume", "lease": alices["lease"]})
    await carol.expect_error("no_active_session")

    await alice.ping()  # both still attached to their own attempts
    await bob.ping()
    assert [e.kind for e in await attaches(server, alices["session_id"])] == [
        AuditKind.ATTACHED
    ]
    assert [e.kind for e in await attaches(server, bobs["session_id"])] == [
        AuditKind.ATTACHED
    ]


async def test_a_lease_on_a_free_attempt_attaches_and_says_so(server: Server) -> None:
    first, state = await started(server)
    await closed(first, server, state["session_id"])

    back = await server.candidate()
    await back.send({"type": "resume", "lease": state["lease"]})

    assert (await back.expect("state"))["session_id"] == state["session_id"]
    entries = await attaches(server, state["session_id"])
    assert entries[-1].data == {"lease": True, "taken_over": False}
