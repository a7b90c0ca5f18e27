"""Grading answers and summarising attempts (PRODUCT.md section 5), as jobs.

Every recorded answer gets a job (:meth:`GradingService.answers_recorded`); jobs sent
together are graded together (:meth:`GradingService.grade_answers`), and the job that
finishes the last answer of a completed attempt summarises the attempt. The database
says what is left to do, so a job may be lost, run twice or run late without harm:

* a failed try is counted on the answer and retried with backoff by the periodic
  :meth:`GradingService.requeue_pending`, which also re-enqueues every answer whose
  job never ran (a crash between commit and enqueue, the broker down, a worker killed
  mid-task; PRODUCT.md 6.5). Retries go through the database rather than the broker:
  no schedule source is needed and a retry survives any process;
* after ``max_attempts`` tries, or at once when the error is not retryable, the answer
  goes to ``needs_review`` with the reason;
* a summary the model cannot write after ``max_summary_attempts`` is computed by code
  (recommendation by thresholds) and says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from evaluators.errors import EvaluationError
from evaluators.grade import EvaluationStatus, Grader, QuestionResult, Summary
from evaluators.summary import recommendation_for, totals
from protocol.attempt import Status
from protocol.ids import InterviewId, Millis, SessionId
from server.batching import Batcher
from server.cluster.bus import EventBus
from server.errors import ServerError, Unavailable
from server.storage.results import (
    Graded,
    GradingJob,
    JobKey,
    NeedsReview,
    Outcome,
    ResultsStore,
    RetryLater,
    SummaryJob,
)

logger = logging.getLogger(__name__)

STALE_MS = 10 * 60 * 1000
"""A job enqueued this long ago without a result is enqueued again: above the longest
grading task (server.grading.tasks.TASK_TIMEOUT_S)."""
MAX_ATTEMPTS = 4
MAX_SUMMARY_ATTEMPTS = 3
RETRY_BASE_MS = 5_000
RETRY_CAP_MS = 5 * 60 * 1000
MAX_REASON_CHARS = 500
CONCURRENCY = 64
"""Grades one process runs at once (``GRADING_CONCURRENCY``): model requests in
flight, mostly."""
WRITE_BATCH = 100
SEND_TIMEOUT_S = 10.0
"""A job not handed to the broker within this is given back (a hung connection)."""

COMPUTED = "computed"
COMPUTED_PROMPT = "thresholds-v1"


class JobQueue(Protocol):
    """Where jobs are sent (``server.grading.queue.GradingQueue``): concurrent calls
    may share one message."""

    async def grade(self, session_id: SessionId, index: int) -> None: ...
    async def summarise(self, session_id: SessionId) -> None: ...


def retry_delay_ms(attempts: int) -> Millis:
    """Exponential backoff after ``attempts`` failed tries (1, 2, ...)."""
    delay: int = RETRY_BASE_MS << max(attempts - 1, 0)
    return min(delay, RETRY_CAP_MS)


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]


def computed_summary(results: Sequence[QuestionResult], reason: str) -> Summary:
    """The summary code writes when the model cannot: totals and a threshold
    (``evaluators.summary``)."""
    total, maximum, percentage = totals(results)
    recommendation = recommendation_for(percentage)
    needs_review = EvaluationStatus.NEEDS_REVIEW
    review = sum(result.status is needs_review for result in results)
    expired = sum(result.time_expired for result in results)
    text = (
        f"Computed by the server, not written by a model ({reason}). "
        f"Scored {total:g} of {maximum:g} ({percentage:.1f}%) over {len(results)} "
        f"questions; {review} need review and {expired} ran out of time. "
        f"Recommendation by score thresholds: {recommendation.value}."
    )
    return Summary(
        total=total,
        max_score=maximum,
        percentage=percentage,
        text=text,
        recommendation=recommendation,
        model=COMPUTED,
        prompt_version=COMPUTED_PROMPT,
    )


class GradingService:
    def __init__(
        self,
        results: ResultsStore,
        grader: Grader,
        bus: EventBus,
        clock: Callable[[], Millis],
        queue: JobQueue,
        *,
        stale_ms: int = STALE_MS,
        max_attempts: int = MAX_ATTEMPTS,
        max_summary_attempts: int = MAX_SUMMARY_ATTEMPTS,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.results = results
        self.grader = grader
        self.bus = bus
        self.clock = clock
        self.queue = queue
        self.stale_ms = stale_ms
        self.max_attempts = max_attempts
        self.max_summary_attempts = max_summary_attempts
        self._slots = asyncio.Semaphore(concurrency)
        # Outcomes finishing together are stored in one transaction.
        self._writes: Batcher[tuple[JobKey, Outcome], bool] = Batcher(
            self._store, max_items=WRITE_BATCH
        )

    # -- enqueueing -------------------------------------------------------------------

    async def answers_recorded(
        self, session_id: SessionId, indexes: Sequence[int]
    ) -> None:
        """The :data:`server.candidate.sweeper.AnswersRecorded` hook: send the jobs of
        answers just written. Their write claimed the jobs (``enqueued_at``,
        server.storage.tables.answer_rows). Never raises (see :meth:`_send`)."""
        try:
            await self._send([(session_id, index) for index in indexes])
        except Exception as exc:
            logger.warning("grading of %s not enqueued yet: %r", session_id, exc)

    async def _send(self, keys: Sequence[JobKey]) -> None:
        """Send claimed jobs. A job that cannot be sent (the broker down, or not
        answering within ``SEND_TIMEOUT_S``) is given back, so that the next
        re-enqueue sends it; one neither sent nor given back is sent once stale.

        Raises:
            Exception: the first send's error, once every send ended.
        """

        async def send(key: JobKey) -> None:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.queue.grade(*key)

        sent = await asyncio.gather(
            *(send(key) for key in keys), return_exceptions=True
        )
        failed = [key for key, result in zip(keys, sent, strict=True) if result]
        if not failed:
            return
        try:
            await self.results.release_jobs(failed)
        except Exception as again:
            logger.warning("%d grading jobs wait until stale: %r", len(failed), again)
        raise next(result for result in sent if isinstance(result, BaseException))

    async def _enqueue(self, keys: Sequence[JobKey], now: Millis, stale_ms: int) -> int:
        """Claim and send the jobs of ``keys`` that have no live job."""
        claimed = await self.results.claim_jobs(keys, now, stale_ms=stale_ms)
        await self._send(claimed)
        return len(claimed)

    async def requeue_pending(self, *, stale_ms: int | None = None) -> int:
        """Enqueue every job the database says is missing, stale or due for a retry;
        returns how many. ``stale_ms=0`` also takes over jobs thought to be running
        (at startup with the in-process broker, where none can be)."""
        stale_ms = self.stale_ms if stale_ms is None else stale_ms
        now = self.clock()
        due = await self.results.due_answers(now, stale_ms=stale_ms)
        sent = await self._enqueue(due, now, stale_ms) if due else 0
        for session_id in await self.results.due_summaries(now, stale_ms=stale_ms):
            if await self.results.claim_summary(session_id, now, stale_ms=stale_ms):
                await self.queue.summarise(session_id)
                sent += 1
        return sent

    # -- answers ----------------------------------------------------------------------

    async def grade_answers(self, keys: Sequence[JobKey]) -> None:
        """Grade the answers still pending among ``keys``, together, then summarise
        each attempt whose last answer this finished.

        Raises:
            ServerError: the database failed; the jobs are found again later.
        """
        try:
            await self._grade_answers(keys)
        except (ServerError, asyncio.CancelledError):
            # The database failed, or the task was cut short (its time limit, a
            # worker stopping): give the unfinished jobs back, so the next
            # re-enqueue sends them rather than waiting for them to go stale.
            try:
                await asyncio.shield(self.results.release_jobs(keys))
            except (ServerError, asyncio.CancelledError) as again:
                logger.warning("grading jobs wait until stale: %r", again)
            raise

    async def _grade_answers(self, keys: Sequence[JobKey]) -> None:
        jobs = await self.results.grading_jobs(keys)
        ran = await asyncio.gather(
            *(self._grade(job) for job in jobs), return_exceptions=True
        )
        finished = [
            job.session_id for job, done in zip(jobs, ran, strict=True) if done is True
        ]
        if finished:
            await self._summarise_ready(finished)
        for outcome in ran:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _grade(self, job: GradingJob) -> bool:
        """Grade and store one job; whether it is finished (not to be retried)."""
        try:
            async with self._slots:
                grade = await self.grader.grade(job.question, job.answer)
        except EvaluationError as exc:
            outcome = self._failure(job, reason_of(exc), retryable=exc.retryable)
        except Exception as exc:  # a grader's bug must not lose the answer
            logger.exception("grader failed on %s question %d", *_job(job))
            outcome = self._failure(job, reason_of(exc), retryable=True)
        else:
            outcome = Graded(grade)
        key = (job.session_id, job.index)
        try:
            stored = await self._writes.submit((key, outcome))
        except Unavailable:
            raise
        except ServerError as exc:  # the database refused this outcome itself
            if isinstance(outcome, NeedsReview):
                raise
            outcome = NeedsReview(f"the grade could not be stored: {reason_of(exc)}")
            stored = await self._writes.submit((key, outcome))
        # A stored outcome's answer_evaluated event was stored with it
        # (ResultsStore.store_outcomes) and announced to monitors.
        match outcome:
            case NeedsReview(reason) if stored:
                logger.warning("grading %s/%d needs review: %s", *_job(job), reason)
            case RetryLater(reason):
                logger.info("grading %s/%d failed, will retry: %s", *_job(job), reason)
                return False
        return True

    def _failure(self, job: GradingJob, reason: str, *, retryable: bool) -> Outcome:
        """A retry later, or a person's review once the tries are used up."""
        attempts = job.attempts + 1
        if retryable and attempts < self.max_attempts:
            return RetryLater(reason, self.clock() + retry_delay_ms(attempts))
        return NeedsReview(reason)

    async def _store(
        self, outcomes: Sequence[tuple[JobKey, Outcome]]
    ) -> Sequence[bool | ServerError]:
        try:
            return await self.results.store_outcomes(outcomes, self.clock())
        except Unavailable:
            raise
        except ServerError:
            if len(outcomes) == 1:
                raise
        # One outcome the database refuses must not fail the others with it.
        stored: list[bool | ServerError] = []
        for outcome in outcomes:
            try:
                [one] = await self.results.store_outcomes([outcome], self.clock())
            except Unavailable:
                raise
            except ServerError as exc:
                stored.append(exc)
            else:
                stored.append(one)
        return stored

    async def _summarise_ready(self, session_ids: Sequence[SessionId]) -> None:
        # Each grade was committed before this read, so the last to finish sees
        # nothing pending; of the last two finishing together, one claims the summary.
        now = self.clock()
        claimed = [
            session_id
            for session_id in await self.results.ready_to_summarise(session_ids)
            if await self.results.claim_summary(session_id, now, stale_ms=self.stale_ms)
        ]
        done = await asyncio.gather(
            *(self.summarise(session_id) for session_id in claimed),
            return_exceptions=True,
        )
        for result in done:
            if isinstance(result, BaseException):
                raise result

    # -- the attempt ------------------------------------------------------------------

    async def summarise(self, session_id: SessionId) -> None:
        """Write the attempt's summary once (by the model, else by code).

        Raises:
            ServerError: the database failed; the job is found again later.
        """
        job = await self.results.summary_job(session_id)
        if job is None or not _ready(job):
            return
        try:
            summary = await self.grader.summarise(title=job.title, results=job.results)
        except ServerError:
            raise
        except Exception as exc:
            retryable = not isinstance(exc, EvaluationError) or exc.retryable
            if not isinstance(exc, EvaluationError):
                logger.exception("summariser failed on %s", session_id)
            fallback = await self._summary_failed(job, reason_of(exc), retryable)
            if fallback is None:
                return
            summary = fallback
        # Stored with its ``evaluated`` event when it applied.
        await self.results.store_summary(session_id, summary, self.clock())

    async def _summary_failed(
        self, job: SummaryJob, reason: str, retryable: bool
    ) -> Summary | None:
        attempts = job.attempts + 1
        if retryable and attempts < self.max_summary_attempts:
            logger.info("summary of %s failed, will retry: %s", job.session_id, reason)
            retry_at = self.clock() + retry_delay_ms(attempts)
            await self.results.schedule_summary_retry(job.session_id, retry_at)
            return None
        logger.warning("summary of %s computed by code: %s", job.session_id, reason)
        return computed_summary(job.results, f"the summary model failed: {reason}")

    # -- recruiters -------------------------------------------------------------------

    async def override(
        self,
        interview_id: InterviewId,
        session_id: SessionId,
        index: int,
        *,
        score: float,
        note: str,
        by: str,
    ) -> None:
        """Raises: UnknownAnswer."""
        now = self.clock()
        # Stored with its score_overridden event, which monitors hear of.
        await self.results.override(
            session_id, index, score=score, note=note, by=by, now=now
        )

    async def reevaluate(self, session_id: SessionId, *, by: str) -> bool:
        """Grade the attempt again (see :meth:`ResultsStore.reevaluate`); whether it
        applied. The jobs are enqueued at once, or found by the re-enqueue."""
        if not await self.results.reevaluate(session_id, by=by, now=self.clock()):
            return False
        detail = await self.results.session_detail(session_id)
        keys = (
            [(session_id, a.question_index) for a in detail.answers] if detail else []
        )
        try:
            await self._enqueue(keys, self.clock(), self.stale_ms)
        except Exception as exc:  # the re-enqueue finds them
            logger.warning("re-evaluation of %s not enqueued yet: %r", session_id, exc)
        return True


def _ready(job: SummaryJob) -> bool:
    pending = EvaluationStatus.PENDING
    graded = all(result.status is not pending for result in job.results)
    return job.status == Status.COMPLETED and not job.has_summary and graded


def _job(job: GradingJob) -> tuple[SessionId, int]:
    return job.session_id, job.index
