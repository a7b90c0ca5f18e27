"""The leases of the grading jobs one process holds (docs/design.md, "Grading").

A job's lease is its ``enqueued_at`` (a summary's: ``summary_enqueued_at``): taken
when the job is claimed and sent, renewed by the process grading it, and run out
``lease_ms`` after the last renewal. :meth:`GradingService.requeue_pending` sends a
job whose lease ran out again, once the workers have read every message sent: so a
job lost with Redis, with a worker killed while grading it, or with an instance
killed between an answer's commit and its send is sent again within a lease, while
a slow job being graded is not, and one still waiting in the stream is not either.

:class:`Leases` knows which jobs this process holds, from the moment a task takes
them until it ends, and renews them all in one transaction every
``lease_ms / RENEWALS_PER_LEASE`` (:meth:`Leases.renew`, run by
``server.grading.worker.renew_forever``). A job that waited longer than that for a
worker is renewed as soon as it is taken (:meth:`Leases.taken`), so its lease never
runs out between being read from the stream and the next renewal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from protocol.ids import Millis, SessionId
from server.batching import Batcher
from server.errors import ServerError
from server.storage.results import JobKey, ResultsStore

logger = logging.getLogger(__name__)

LEASE_MS = 30_000
"""A job nobody renewed for this long is sent again (``GRADING_LEASE_S``)."""
RENEWALS_PER_LEASE = 3
"""Renewals per lease: a held job's lease is at most two renewal intervals old, a
third of the lease is left for a slow database."""

Held = tuple[Sequence[JobKey], Sequence[SessionId]]


class Leases:
    """The jobs this process holds (answers' and summaries'), and their renewal."""

    def __init__(
        self,
        results: ResultsStore,
        clock: Callable[[], Millis],
        *,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.results = results
        self.clock = clock
        self.lease_ms = lease_ms
        self.answers: set[JobKey] = set()
        self.summaries: set[SessionId] = set()
        # Jobs taken together (of tasks starting together) share one renewal.
        self._taken: Batcher[Held, None] = Batcher(self._renew_taken)

    @property
    def renew_every_ms(self) -> int:
        return max(1, self.lease_ms // RENEWALS_PER_LEASE)

    @contextlib.contextmanager
    def holding(self, keys: Iterable[JobKey]) -> Iterator[list[JobKey]]:
        """Hold the jobs of ``keys`` while the block runs; it gets the ones this
        process did not hold already (a second copy of a job being graded here is
        left to the first)."""
        fresh = [key for key in dict.fromkeys(keys) if key not in self.answers]
        self.answers.update(fresh)
        try:
            yield fresh
        finally:
            self.answers.difference_update(fresh)

    @contextlib.contextmanager
    def holding_summary(self, session_id: SessionId) -> Iterator[bool]:
        """Hold an attempt's summary job; ``False`` when this process holds it
        already."""
        if session_id in self.summaries:
            yield False
            return
        self.summaries.add(session_id)
        try:
            yield True
        finally:
            self.summaries.discard(session_id)

    def waited(self, enqueued_at: Millis | None) -> bool:
        """Whether a job leased at ``enqueued_at`` must be renewed when taken."""
        return enqueued_at is None or enqueued_at < self.clock() - self.renew_every_ms

    async def taken(
        self, answers: Sequence[JobKey] = (), summaries: Sequence[SessionId] = ()
    ) -> None:
        """Renew now the leases of jobs just taken that waited for a worker (see
        :meth:`waited`); jobs taken together share one statement. Never raises: a
        lease not renewed at worst gets its job graded twice."""
        if not answers and not summaries:
            return
        try:
            await self._taken.submit((answers, summaries))
        except ServerError as exc:
            logger.warning("leases of jobs just taken not renewed: %s", exc)

    async def renew(self) -> int:
        """Renew the lease of every job held, in one transaction; how many.

        Raises:
            ServerError: the database failed; the next renewal tries again.
        """
        answers, summaries = list(self.answers), list(self.summaries)
        if answers or summaries:
            await self.results.renew(answers, summaries, self.clock())
        return len(answers) + len(summaries)

    async def _renew_taken(self, taken: Sequence[Held]) -> list[None]:
        answers = [key for keys, _ in taken for key in keys]
        summaries = [session_id for _, ids in taken for session_id in ids]
        await self.results.renew(answers, summaries, self.clock())
        return [None] * len(taken)
