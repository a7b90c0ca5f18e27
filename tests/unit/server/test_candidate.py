"""The socket shell's own decisions that need no socket."""

from __future__ import annotations

from typing import Any

from server.candidate import connection as candidate
from server.candidate.connection import CandidateConnection
from server.candidate.scheduler import Scheduler
from server.cluster.bus import InProcessBus
from server.cluster.lock import InProcessLock
from server.services import Services
from server.settings import Settings


def connection() -> CandidateConnection:
    unused: Any = None  # never reached by these decisions
    services = Services(
        settings=Settings(),
        clock=lambda: 0,
        storage=unused,
        results=unused,
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
