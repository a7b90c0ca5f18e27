"""Server-side expiry of attempts nobody is connected to (PRODUCT.md section 6.6).

:func:`settle` expires whatever is overdue in one guarded write, retrying from the
fresh state when another writer got there first; the sweeper runs it periodically
over every overdue attempt, and the socket shell runs it before start and resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from protocol.attempt import Attempt, change_between
from protocol.expiry import expire
from protocol.ids import Millis, SessionId
from server.cluster.bus import EventBus
from server.errors import Conflict, ServerError
from server.storage.attempts import Storage

logger = logging.getLogger(__name__)

AnswersRecorded = Callable[[SessionId, Sequence[int]], Awaitable[None]]
"""Told (after the commit) which questions of an attempt just got their answer, so
they can be graded. It must not raise; answers it misses stay pending and are found
again (PRODUCT.md 6.5)."""


async def nothing_recorded(session_id: SessionId, indexes: Sequence[int]) -> None:
    """The default hook: no grading wired in."""


SWEEPER = "sweeper"
MAX_RACES = 5
MARGIN_MS = 1000
"""The sweeper leaves a just-closed question alone this long, so an answer received in
time whose write is still in flight on a connection is stored, not beaten by expiry."""


async def settle(
    storage: Storage,
    bus: EventBus,
    attempt: Attempt,
    now: Millis,
    recorded: AnswersRecorded = nothing_recorded,
) -> Attempt | None:
    """Persist the expiry of every overdue question of ``attempt``.

    Returns:
        The stored attempt afterwards (``None`` if it vanished).
    """
    current: Attempt | None = attempt
    for _ in range(MAX_RACES):
        if current is None:
            return None
        expiry = expire(current, now)
        if not expiry.answers:
            return current
        change = change_between(current, expiry.attempt)
        try:
            await storage.commit(change, fence=None, audit=expiry.audit, now=now)
        except Conflict:
            current = await storage.load_attempt(current.session_id)
            continue
        await bus.publish(current.session_id, SWEEPER)
        await recorded(current.session_id, [a.question_index for a in change.answers])
        return expiry.attempt
    return current


class Sweeper:
    """Every ``interval_ms``, expires what is overdue in attempts left alone."""

    def __init__(
        self,
        storage: Storage,
        bus: EventBus,
        clock: Callable[[], Millis],
        *,
        interval_ms: Millis = 1000,
        batch: int = 500,
        recorded: AnswersRecorded = nothing_recorded,
    ) -> None:
        self.recorded = recorded
        self.storage = storage
        self.bus = bus
        self.clock = clock
        self.interval_ms = interval_ms
        self.batch = batch

    async def sweep_once(self) -> int:
        """Expire every overdue attempt once; returns how many were settled."""
        now = self.clock() - MARGIN_MS
        settled = 0
        for session_id in await self.storage.due_attempts(now, self.batch):
            settled += await self._settle_one(session_id, now)
        return settled

    async def _settle_one(self, session_id: SessionId, now: Millis) -> int:
        attempt = await self.storage.load_attempt(session_id)
        if attempt is None:
            return 0
        await settle(self.storage, self.bus, attempt, now, self.recorded)
        return 1

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except ServerError as exc:
                logger.warning("sweep failed, will retry: %s", exc)
            except Exception:
                logger.exception("sweep failed, will retry")
            await asyncio.sleep(self.interval_ms / 1000)
