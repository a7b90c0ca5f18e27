"""The webhook dispatcher: claims due deliveries and sends them, in every ``serve``.

One loop per process: it claims as many due deliveries as it has free slots
(``WEBHOOK_CONCURRENCY``; once a quarter of them are free, so that one claim serves
several deliveries), with a lease of twice the attempt's time limit, sends
each in its own task, and records the attempts, many per transaction
(:class:`server.batching.Batcher`). It wakes when a slot frees, when told
(:meth:`Dispatcher.wake`, e.g. a manual redelivery) and every ``WEBHOOK_POLL_MS``.
Several instances share the work through the leases; a delivery claimed by an
instance that died is claimed again once its lease lapses. Stopping gives unsent
claims back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence

from protocol.ids import Millis
from protocol.webhooks.schedule import RETRY_SCHEDULE_MS, Verdict, judge
from server.batching import Batcher
from server.errors import ServerError
from server.storage.webhooks import AttemptResult, Claim, WebhookStore
from server.webhooks.sender import Sender

logger = logging.getLogger(__name__)

RECORD_BATCH = 100
FAILURE_PAUSE_S = 1.0
"""After the database failed, the loop waits this long (or a wake-up) to claim again."""


class Dispatcher:
    def __init__(
        self,
        store: WebhookStore,
        sender: Sender,
        clock: Callable[[], Millis],
        *,
        concurrency: int = 32,
        poll_ms: int = 1000,
        schedule: Sequence[Millis] = RETRY_SCHEDULE_MS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock
        self.concurrency = concurrency
        self.poll_s = poll_ms / 1000
        self.lease_ms = round(2 * sender.timeout_s * 1000)
        self.schedule = tuple(schedule)
        self.jitter = jitter
        self._claim_at = max(1, concurrency // 4)
        self._wake = asyncio.Event()
        self._sending: dict[asyncio.Task[None], Claim] = {}
        self._records: Batcher[AttemptResult, bool] = Batcher(
            self._record, max_items=RECORD_BATCH
        )

    def wake(self) -> None:
        """Claim now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled; then the claims not sent yet are given back."""
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self.deliver_due()
                except ServerError as exc:
                    logger.warning("webhook claim failed, will retry: %s", exc)
                    claimed = 0
                    await self._sleep(FAILURE_PAUSE_S)
                if claimed and self._free():
                    continue  # more may be due at once
                await self._sleep(self.poll_s)
        finally:
            await self._stop()

    async def deliver_due(self) -> int:
        """Claim what the free slots can send and start sending it; how many."""
        free = self._free()
        # Claiming for one freed slot at a time would cost a transaction per
        # delivery under load: wait until a quarter of the slots are free (or all).
        if not free or (self._sending and free < self._claim_at):
            return 0
        claims = await self.store.claim(
            self.clock(), lease_ms=self.lease_ms, limit=free
        )
        for claim in claims:
            task = asyncio.create_task(self.attempt(claim), name="webhook")
            self._sending[task] = claim
            task.add_done_callback(self._sent)
        return len(claims)

    async def settle(self) -> None:
        """Until every attempt started so far is recorded (tests, the bench)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def attempt(self, claim: Claim) -> None:
        """Send ``claim`` once and record what came of it; never raises but for
        cancellation (a failed record leaves the lease to lapse)."""
        at = self.clock()
        answer = await self.sender.send(claim, at)
        outcome = judge(
            tries=claim.tries + 1,
            status_code=answer.status_code,
            retry_after=answer.retry_after,
            now=self.clock(),
            jitter=self.jitter(),
            schedule=self.schedule,
        )
        result = AttemptResult(
            claim=claim,
            at=at,
            status_code=answer.status_code,
            duration_ms=answer.duration_ms,
            error=answer.error,
            response_excerpt=answer.excerpt,
            signatures=answer.signatures,
            outcome=outcome,
        )
        try:
            stored = await self._records.submit(result)
        except ServerError as exc:
            logger.warning(
                "webhook attempt of %s not recorded (retried when its lease "
                "lapses): %s",
                claim.delivery_id,
                exc,
            )
            return
        if not stored:
            logger.info("webhook attempt of %s came after its lease", claim.delivery_id)
        elif outcome.verdict is Verdict.GONE:
            logger.warning("webhook endpoint of %s answered 410: disabled", claim.url)
        elif outcome.verdict is Verdict.EXHAUSTED:
            logger.warning(
                "webhook delivery %s failed for good after %d attempts: %s",
                claim.delivery_id,
                claim.tries + 1,
                answer.error or answer.status_code,
            )

    async def _record(
        self, results: Sequence[AttemptResult]
    ) -> Sequence[bool | BaseException]:
        return await self.store.record(results)

    def _free(self) -> int:
        return self.concurrency - len(self._sending)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook attempt failed", exc_info=task.exception())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _stop(self) -> None:
        unsent = list(self._sending.items())
        for task, _ in unsent:
            task.cancel()
        await asyncio.gather(*(task for task, _ in unsent), return_exceptions=True)
        if unsent:
            try:
                await asyncio.shield(self.store.release([claim for _, claim in unsent]))
            except (ServerError, asyncio.CancelledError) as exc:
                logger.warning("webhook claims wait for their leases: %r", exc)
        await self.sender.close()
