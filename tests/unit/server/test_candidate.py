"""The socket shell's decisions that need no socket (server/candidate/connection.py).

The timer tests drive ``on_due`` by hand, as the shared scheduler would.
"""

from __future__ import annotations

import json
from typing import Any

from protocol.attempt import Attempt, QuestionView, begin
from protocol.ids import InterviewId, Millis, SessionId, UserId
from protocol.messages import User
from server.candidate import connection as candidate
from server.candidate.connection import CandidateConnection
from server.candidate.scheduler import Scheduler
from server.cluster.bus import InProcessBus
from server.cluster.lock import InProcessLock
from server.services import Services
from server.settings import Settings

T0: Millis = 1_700_000_000_000
CLOSES: Millis = 60_000 + 2_000


def connection(settings: Settings | None = None) -> CandidateConnection:
    unused: Any = None  # never reached by these decisions
    services = Services(
        settings=settings or Settings(),
        clock=lambda: 0,
        storage=unused,
        results=unused,
        catalogue=unused,
        lock=InProcessLock(),
        bus=InProcessBus(),
        grading=unused,
        scheduler=Scheduler(lambda: 0),
    )
    return CandidateConnection(websocket=None, services=services)  # type: ignore[arg-type]


async def test_a_tick_that_overflows_the_queue_closes_4008_to_a_present_client() -> (
    None
):
    shell = connection()

    await shell._handle(candidate._TOO_SLOW)

    assert shell.close_code == 4008
    assert not shell.peer_gone  # so the close frame is sent, not skipped


async def test_a_binary_frame_goes_to_the_core_which_refuses_it_before_auth() -> None:
    shell = connection()

    await shell._handle(candidate._Text(None))

    sent = shell.protocol.messages_to_send()
    assert len(sent) == 1 and '"unauthenticated"' in sent[0]
    assert shell.protocol.close_code == 4401


def attempt() -> Attempt:
    view = QuestionView(
        index=0,
        type="short_answer",
        text="q",
        options=None,
        language=None,
        points=1.0,
        difficulty="easy",
        time_limit_s=60,
    )
    return begin(
        session_id=SessionId("s-1"),
        interview_id=InterviewId("i-1"),
        title="t",
        candidate_id=UserId("c-1"),
        number=1,
        questions=(view, view),
        grace_ms=2_000,
        now=T0,
    )


def attached(settings: Settings | None = None) -> CandidateConnection:
    """A shell whose protocol is attached to ``attempt()``; nothing queued."""
    shell = connection(settings)
    protocol = shell.protocol
    protocol.receive_text('{"type":"auth","token":"t"}', T0)
    protocol.effects()
    protocol.receive_authenticated(User(id="c-1", name="Cleo", role="candidate"))
    protocol.effects()
    protocol.receive_active(None, T0)
    protocol.receive_attached(attempt(), T0, lease="l")
    protocol.messages_to_send()
    return shell


async def test_a_due_tick_goes_to_the_outbox_without_waking_the_handler() -> None:
    shell = attached()

    shell.on_due(T0 + 1_000)

    assert shell.inbox.empty()
    frame = json.loads(await shell.outbox.get())
    assert (frame["type"], frame["remaining_ms"]) == ("tick", 59_000)


async def test_only_the_newest_tick_waits_in_the_outbox() -> None:
    shell = attached()

    shell.on_due(T0 + 1_000)
    shell.on_due(T0 + 2_000)

    assert len(shell.outbox) == 1
    assert json.loads(await shell.outbox.get())["server_time"] == T0 + 2_000


async def test_a_due_expiry_is_handed_to_the_handler_and_changes_nothing_here() -> None:
    shell = attached()
    generation = shell.generation

    shell.on_due(T0 + CLOSES + 1)

    assert shell.inbox.get_nowait() is candidate._WAKE
    assert shell.generation == generation + 1  # the scheduler does not requeue it
    assert shell.protocol.effects() == []  # no write started outside the handler
    assert len(shell.outbox) == 0


async def test_a_tick_that_finds_the_send_queue_full_asks_the_handler_to_close() -> (
    None
):
    shell = attached(Settings(send_queue_max=1))
    shell.outbox.put("state")

    shell.on_due(T0 + 1_000)

    assert shell.inbox.get_nowait() is candidate._TOO_SLOW


async def test_the_shell_schedules_the_protocols_next_wakeup_only_when_it_moves() -> (
    None
):
    shell = attached()
    scheduler = shell.services.scheduler
    assert isinstance(scheduler, Scheduler)

    shell._reschedule()
    generation = shell.generation
    shell._reschedule()  # nothing moved: the entry stays

    assert shell.due_at == shell.protocol.next_wakeup(0)
    assert shell.generation == generation
    shell.protocol.receive_shutdown()
    shell._reschedule()
    assert shell.due_at is None
    assert shell.generation == generation + 1  # cancelled
    scheduler.close()
