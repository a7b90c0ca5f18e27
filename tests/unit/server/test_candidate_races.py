"""The socket driver when writes fail or lose races (server/candidate/connection.py):
conflicts decided again, the database away, takeovers, Start Over.

Another writer is played by :meth:`FakeStorage.interleave`: its change lands just
before the socket's own write, whose guard then fails for real.
"""

from __future__ import annotations

import asyncio

from protocol.attempt import Attempt, change_between, submit
from protocol.audit import AuditKind
from protocol.ids import SessionId, UserId
from server.candidate.sweeper import settle
from server.errors import Conflict
from tests.e2e._client import UNIT_S
from tests.fakes.services import T0
from tests.unit.server._candidate import CANDIDATE, World


async def stored(world: World, session_id: SessionId | str) -> Attempt:
    attempt = await world.fakes.storage.load_attempt(SessionId(session_id))
    assert attempt is not None
    return attempt


async def test_an_answer_stored_first_elsewhere_becomes_a_duplicate(
    world: World,
) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    storage = world.fakes.storage
    before = await stored(world, state["session_id"])

    async def same_answer_from_another_tab() -> None:
        change = change_between(before, submit(before, 0, "b", T0 + 1).attempt)
        await storage.commit(change, fence=None, audit=[])

    storage.interleave("commit", same_answer_from_another_tab)
    world.fakes.clock.advance(2)
    client.answer(0, "b", ref="r")

    assert (await client.expect("state"))["question_index"] == 1  # the news
    ack = await client.expect("answer_ack")
    assert (ack["ref"], ack["status"], ack["time_taken_ms"]) == ("r", "duplicate", 1)
    after = await stored(world, state["session_id"])
    assert [answer.text for answer in after.answers] == ["b"]
    assert storage.calls["commit"] == 2  # the other tab's and ours, refused
    assert world.fakes.grading.answers == []  # the other writer tells grading


async def test_an_answer_beaten_by_the_expiry_is_too_late_and_kept(
    world: World,
) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    storage = world.fakes.storage
    before = await stored(world, state["session_id"])

    async def sweeper_of_an_instance_whose_clock_runs_ahead() -> None:
        await settle(storage, world.fakes.bus, before, T0 + 62_001)

    storage.interleave("commit", sweeper_of_an_instance_whose_clock_runs_ahead)
    world.fakes.clock.advance(61_000)  # in time here: within the grace
    client.answer(0, "late words", ref="r")

    expired = await client.expect("time_expired")
    assert expired["question_index"] == 0
    assert (await client.expect("state"))["question_index"] == 1
    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("too_late", "r")
    assert (await client.expect("state"))["question_index"] == 1
    log = await storage.audit_log(SessionId(state["session_id"]))
    late = [entry for entry in log if entry.kind is AuditKind.LATE_ANSWER]
    assert late[0].data == {"question_index": 0, "text": "late words"}


async def test_a_conflict_with_nothing_changed_is_decided_again_and_stored(
    world: World,
) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.storage.fail("commit", Conflict("injected"), times=2)

    client.answer(0, "b", ref="r")

    assert (await client.expect("answer_ack"))["status"] == "accepted"
    assert world.fakes.storage.calls["commit"] == 3
    registry = world.fakes.metrics.registry
    assert registry.get_sample_value("interview_write_conflicts_total") == 2
    assert len((await stored(world, state["session_id"])).answers) == 1


async def test_a_write_that_keeps_losing_gives_up_with_an_error(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.storage.fail("commit", Conflict("injected"), times=10)

    client.answer(0, "b", ref="r")

    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("internal", "r")
    assert world.fakes.storage.calls["commit"] == 6  # MAX_RACES retries
    assert (await stored(world, state["session_id"])).answers == ()


async def test_an_unavailable_database_acknowledges_nothing_and_a_resend_works(
    world: World,
) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.storage.fail("commit")

    client.answer(0, "b", ref="r1")

    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("internal", "r1")
    assert "send it again" in error["message"]
    assert (await stored(world, state["session_id"])).answers == ()
    assert world.fakes.grading.answers == []

    client.answer(0, "b", ref="r1")

    ack = await client.expect("answer_ack")
    assert (ack["ref"], ack["status"]) == ("r1", "accepted")
    assert (await client.expect("state"))["question_index"] == 1


async def test_an_unavailable_database_on_a_draft_is_an_error(world: World) -> None:
    interview = await world.interview()
    client, state = await world.attached(interview)
    world.fakes.storage.fail("save_draft")

    client.send({"type": "draft", "question_index": 0, "answer": "x"})

    assert (await client.expect("error"))["code"] == "internal"
    assert (await stored(world, state["session_id"])).draft is None


async def test_a_draft_that_loses_to_the_expiry_is_too_late(world: World) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    storage = world.fakes.storage
    before = await stored(world, state["session_id"])

    async def expiry_elsewhere() -> None:
        await settle(storage, world.fakes.bus, before, T0 + 62_001)

    storage.interleave("save_draft", expiry_elsewhere)
    world.fakes.clock.advance(61_000)
    client.send({"type": "draft", "question_index": 0, "answer": "x"})

    assert (await client.expect("time_expired"))["question_index"] == 0
    assert (await client.expect("state"))["question_index"] == 1
    assert (await client.expect("error"))["code"] == "too_late"


async def test_a_takeover_supersedes_the_first_socket_with_4409(world: World) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])

    second = await world.connect()
    await second.login()
    second.send({"type": "resume", "takeover": True})

    assert (await second.expect("state"))["session_id"] == session_id
    await first.expect("superseded")
    assert await first.socket.closed() == 4409
    assert await first.ended() == 4409
    assert await world.fakes.lock.holds(session_id, second.connection.holder)
    assert world.fakes.storage.sessions[session_id].owner_epoch == 2
    log = await world.fakes.storage.audit_log(session_id)
    kinds = [entry.kind for entry in log]
    assert AuditKind.TAKEN_OVER in kinds
    assert log[-1].kind is AuditKind.DETACHED
    assert log[-1].data == {"close_code": 4409}


async def test_a_resume_without_takeover_of_a_held_attempt_is_refused(
    world: World,
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)

    second = await world.connect()
    await second.login()
    second.send({"type": "resume"})

    assert (await second.expect("error"))["code"] == "session_locked"
    assert first.socket.unread() == []
    assert not first.task.done()


async def test_the_superseded_sockets_answer_in_flight_changes_nothing(
    world: World,
) -> None:
    interview = await world.interview()
    first, state = await world.attached(interview)
    session_id = SessionId(state["session_id"])
    storage = world.fakes.storage
    gate = storage.hold("commit")
    first.answer(0, "from the old tab", ref="old")
    async with asyncio.timeout(UNIT_S):
        await gate.entered.wait()

    second = await world.connect()
    await second.login()
    second.send({"type": "resume", "takeover": True})
    await second.expect("state")
    gate.release()

    error = await first.expect("error")
    assert (error["code"], error["ref"]) == ("internal", "old")
    await first.expect("superseded")
    assert await first.ended() == 4409
    assert (await stored(world, session_id)).answers == ()  # the old fence lost
    assert second.socket.unread() == []
    second.answer(0, "from the new tab", ref="new")
    assert (await second.expect("answer_ack"))["status"] == "accepted"


async def test_start_over_abandons_the_attempt_and_attaches_to_a_new_one(
    world: World,
) -> None:
    interview = await world.interview(max_attempts=2)
    client, state = await world.attached(interview)
    old = SessionId(state["session_id"])

    client.send({"type": "restart"})

    fresh = await client.expect("state")
    assert (fresh["attempt"], fresh["question_index"]) == (2, 0)
    new = SessionId(fresh["session_id"])
    assert new != old
    storage = world.fakes.storage
    assert (await stored(world, old)).status == "abandoned"
    assert await storage.count_attempts(interview, UserId(CANDIDATE)) == 2
    holder = client.connection.holder
    assert await world.fakes.lock.holds(new, holder)
    assert not await world.fakes.lock.holds(old, holder)
    assert world.fakes.bus.sessions() == [new]
    old_log = [entry.kind for entry in await storage.audit_log(old)]
    assert old_log[-1] is AuditKind.ABANDONED


async def test_start_over_without_attempts_left_is_refused(world: World) -> None:
    interview = await world.interview(max_attempts=1)
    client, state = await world.attached(interview)

    client.send({"type": "restart"})

    assert (await client.expect("error"))["code"] == "attempts_exhausted"
    assert (await stored(world, state["session_id"])).in_progress


async def test_news_from_another_writer_is_shown(world: World) -> None:
    interview = await world.interview([60, 60], grace_s=2.0)
    client, state = await world.attached(interview)
    before = await stored(world, state["session_id"])

    await settle(world.fakes.storage, world.fakes.bus, before, T0 + 62_001)

    assert (await client.expect("time_expired"))["question_index"] == 0
    assert (await client.expect("state"))["question_index"] == 1
