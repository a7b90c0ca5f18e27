"""Grading end to end on a real database, the in-process broker and a fake grader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import sqlalchemy as sa

from evaluators.errors import ModelUnavailable, SandboxUnavailable
from protocol.attempt import Status, change_between, submit
from protocol.audit import AuditKind
from protocol.definition import InterviewDefinition
from protocol.ids import Millis, SessionId, UserId
from server.errors import ServerError, Unavailable
from server.grading.lease import LEASE_MS
from server.grading.service import (
    MAX_ATTEMPTS,
    MAX_SUMMARY_ATTEMPTS,
    RETRY_CAP_MS,
)
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.results import (
    REEVALUATED,
    SCORE_OVERRIDDEN,
    Graded,
    JobKey,
    Outcome,
)
from server.storage.tables import answers
from tests.e2e._client import UNIT_S
from tests.integration._grading import GOOD_ANSWERS, Harness, failing

pytestmark = pytest.mark.integration

# Points 2 + 5 + 10; the fake gives the MCQ all or nothing, the others half.
GOOD_TOTAL = 2 + 2.5 + 5


@pytest.fixture
async def harness(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> AsyncIterator[Harness]:
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=1
    )
    running = Harness(storage, interview)
    await running.queue.broker.startup()
    yield running
    await running.announcer.drain()  # before the storage disconnects


async def retry_until_settled(harness: Harness, rounds: int) -> None:
    """Let every scheduled retry come due and run, ``rounds`` times."""
    for _ in range(rounds):
        harness.clock.now += RETRY_CAP_MS + 1
        await harness.service.requeue_pending()
        await harness.settle()


async def test_a_multiple_choice_answer_is_graded_as_soon_as_it_is_recorded(
    harness: Harness,
) -> None:
    attempt = await harness.start()
    await harness.answer(attempt, "b")
    await harness.settle()

    detail = await harness.detail(attempt.session_id)
    [mcq] = detail.answers
    assert (mcq.evaluation_status, mcq.score, mcq.model) == ("evaluated", 2, "rule:mcq")
    assert detail.session.status == Status.IN_PROGRESS
    assert (await harness.kinds(attempt.session_id)) == ["answer_evaluated"]


async def test_a_whole_attempt_is_graded_and_summarised(harness: Harness) -> None:
    session_id = await harness.complete()
    await harness.settle()

    detail = await harness.detail(session_id)
    assert detail.session.status == Status.EVALUATED
    assert [a.evaluation_status for a in detail.answers] == ["evaluated"] * 3
    assert detail.session.final_score == GOOD_TOTAL
    assert detail.session.max_score == 17
    assert detail.session.percentage == round(100 * GOOD_TOTAL / 17, 2)
    assert detail.session.recommendation == "hire"
    assert detail.summary == "A fake summary of Backend developer."
    assert (detail.summary_model, detail.summary_raw) == (
        "fake",
        '{"recommendation": "hire"}',
    )
    short = detail.answers[1]
    assert (short.model, short.prompt_version, short.feedback) == (
        "fake",
        "fake/1",
        {"strengths": ["fake"]},
    )
    assert (await harness.kinds(session_id)).count("evaluated") == 1
    assert len(harness.grader.summarised) == 1


async def test_the_summary_model_sees_structured_results_and_no_answer_text(
    harness: Harness,
) -> None:
    await harness.complete()
    await harness.settle()

    [results] = harness.grader.summarised
    assert [(r.index, r.type, r.score, r.status) for r in results] == [
        (0, "mcq", 2, "evaluated"),
        (1, "short_answer", 2.5, "evaluated"),
        (2, "code", 5, "evaluated"),
    ]
    assert not any(GOOD_ANSWERS[1] in repr(result) for result in results)


async def test_running_a_finished_job_again_changes_nothing(harness: Harness) -> None:
    session_id = await harness.complete()
    await harness.settle()
    before = await harness.detail(session_id)
    graded = len(harness.grader.graded)

    harness.clock.now += 60_000
    await harness.service.grade_answers([(session_id, 1)])
    await harness.service.summarise(session_id)
    await harness.queue.grade(session_id, 2)
    await harness.settle()

    assert await harness.detail(session_id) == before
    assert len(harness.grader.graded) == graded
    assert len(harness.grader.summarised) == 1


async def test_answers_graded_together_fail_and_finish_one_by_one(
    harness: Harness,
) -> None:
    harness.grader.failures["short_answer"] = failing(
        1, ModelUnavailable("429", model="m")
    )
    finished = await harness.complete(enqueue=False)
    attempt = await harness.start()
    attempt = await harness.answer(attempt, "b", enqueue=False)  # still in progress

    await harness.service.grade_answers(
        [(finished, 0), (finished, 1), (finished, 2), (attempt.session_id, 0)]
    )

    detail = await harness.detail(finished)
    assert [a.evaluation_status for a in detail.answers] == [
        "evaluated",
        "pending",  # its failed try is counted and retried later
        "evaluated",
    ]
    assert detail.answers[1].grading_attempts == 1
    assert detail.session.status == Status.COMPLETED  # not summarised yet
    other = await harness.detail(attempt.session_id)
    assert other.answers[0].score == 2

    harness.clock.now += RETRY_CAP_MS + 1
    await harness.service.grade_answers([(finished, 1)])
    assert (await harness.detail(finished)).session.status == Status.EVALUATED
    assert (await harness.kinds(finished)).count("evaluated") == 1


async def test_jobs_whose_grades_could_not_be_stored_are_sent_at_the_next_pass(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await harness.complete(enqueue=False)

    async def database_down(*args: object, **kwargs: object) -> list[bool]:
        raise Unavailable("database unavailable: test")

    with monkeypatch.context() as patch:
        patch.setattr(harness.results, "store_outcomes", database_down)
        with pytest.raises(Unavailable):
            await harness.service.grade_answers([(session_id, i) for i in range(3)])

    assert await harness.service.requeue_pending() in (3, 4)  # given back (+ summary)
    await harness.settle()
    assert (await harness.detail(session_id)).session.status == Status.EVALUATED


async def test_jobs_of_a_task_cut_short_are_given_back(harness: Harness) -> None:
    session_id = await harness.complete(enqueue=False)
    harness.grader.meet(4)  # the three grades wait for a fourth that never comes
    grading = asyncio.create_task(
        harness.service.grade_answers([(session_id, i) for i in range(3)])
    )
    async with asyncio.timeout(UNIT_S):
        await harness.grader.arrived(3)
    grading.cancel()  # the task's time limit, or the worker stopping
    with pytest.raises(asyncio.CancelledError):
        await grading
    harness.grader.meet(0)

    assert await harness.service.requeue_pending() in (3, 4)  # given back, not stale
    await harness.settle()
    assert (await harness.detail(session_id)).session.status == Status.EVALUATED


async def test_a_grade_the_database_refuses_goes_to_review_alone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await harness.complete(enqueue=False)
    poisoned = (session_id, 1)
    store = harness.results.store_outcomes

    async def refusing(
        outcomes: Sequence[tuple[JobKey, Outcome]], now: Millis
    ) -> list[bool]:
        if any(k == poisoned and isinstance(o, Graded) for k, o in outcomes):
            raise ServerError("value refused by the database")
        return await store(outcomes, now)

    monkeypatch.setattr(harness.results, "store_outcomes", refusing)
    await harness.service.grade_answers([(session_id, i) for i in range(3)])

    detail = await harness.detail(session_id)
    assert [a.evaluation_status for a in detail.answers] == [
        "evaluated",
        "needs_review",
        "evaluated",
    ]
    assert "could not be stored" in (detail.answers[1].review_reason or "")
    assert detail.session.status == Status.EVALUATED


async def test_an_answer_committed_late_claims_its_job_as_of_the_commit(
    harness: Harness,
) -> None:
    attempt = await harness.start()
    harness.clock.now += 1_000
    after = submit(attempt, 0, "b", harness.clock()).attempt
    late = harness.clock() + LEASE_MS + 60_000  # e.g. expired, settled much later
    change = change_between(attempt, after)
    await harness.storage.commit(change, fence=None, audit=[], now=late)

    harness.clock.now = late + 1
    assert await harness.service.requeue_pending() == 0  # claimed, not stale
    harness.clock.now = late + LEASE_MS + 1
    assert await harness.service.requeue_pending() == 1
    await harness.settle()
    assert (await harness.detail(attempt.session_id)).answers[0].score == 2


async def test_retryable_failures_are_retried_then_need_review_with_the_reason(
    harness: Harness,
) -> None:
    harness.grader.failures["short_answer"] = failing(
        99, ModelUnavailable("429", model="m")
    )
    session_id = await harness.complete()
    await harness.settle()

    first = (await harness.detail(session_id)).answers[1]
    assert (first.evaluation_status, first.grading_attempts) == ("pending", 1)
    assert "ModelUnavailable" in (first.review_reason or "")

    await retry_until_settled(harness, MAX_ATTEMPTS)

    detail = await harness.detail(session_id)
    short = detail.answers[1]
    assert short.evaluation_status == "needs_review"
    assert short.grading_attempts == MAX_ATTEMPTS
    assert short.review_reason == "ModelUnavailable: 429"
    assert (
        harness.grader.graded.count(("short_answer", GOOD_ANSWERS[1])) == MAX_ATTEMPTS
    )
    assert detail.session.status == Status.EVALUATED
    assert detail.session.final_score == GOOD_TOTAL - 2.5
    [results] = harness.grader.summarised
    assert results[1].status == "needs_review"


async def test_a_failure_that_clears_is_graded_on_retry(harness: Harness) -> None:
    harness.grader.failures["code"] = failing(2, ModelUnavailable("timeout", model="m"))
    session_id = await harness.complete()
    await harness.settle()
    await retry_until_settled(harness, 2)

    code = (await harness.detail(session_id)).answers[2]
    assert (code.evaluation_status, code.score, code.grading_attempts) == (
        "evaluated",
        5,
        3,
    )
    assert code.review_reason is None


async def test_a_failure_that_is_not_retryable_needs_review_at_once(
    harness: Harness,
) -> None:
    harness.grader.failures["code"] = failing(1, SandboxUnavailable("no bubblewrap"))
    session_id = await harness.complete()
    await harness.settle()

    detail = await harness.detail(session_id)
    code = detail.answers[2]
    assert (code.evaluation_status, code.grading_attempts) == ("needs_review", 1)
    assert code.review_reason == "SandboxUnavailable: no bubblewrap"
    assert detail.session.status == Status.EVALUATED


async def test_a_summary_the_model_cannot_write_is_computed_and_says_so(
    harness: Harness,
) -> None:
    harness.grader.summary_failures = failing(99, ModelUnavailable("down", model="m"))
    session_id = await harness.complete()
    await harness.settle()
    assert (await harness.detail(session_id)).session.status == Status.COMPLETED

    await retry_until_settled(harness, MAX_SUMMARY_ATTEMPTS)

    detail = await harness.detail(session_id)
    assert len(harness.grader.summarised) == MAX_SUMMARY_ATTEMPTS
    assert detail.session.status == Status.EVALUATED
    assert detail.summary_model == "computed"
    assert detail.summary is not None and "not written by a model" in detail.summary
    assert detail.session.recommendation == "maybe"  # 55.9 %


async def test_the_summary_is_written_once_when_the_last_two_grades_finish_together(
    harness: Harness,
) -> None:
    for _ in range(10):
        session_id = await harness.complete(enqueue=False)
        await harness.service.grade_answers([(session_id, 0)])
        harness.grader.meet(2)
        await asyncio.gather(
            harness.service.grade_answers([(session_id, 1)]),
            harness.service.grade_answers([(session_id, 2)]),
        )
        harness.grader.meet(0)

        detail = await harness.detail(session_id)
        assert detail.session.status == Status.EVALUATED
        assert detail.session.final_score == GOOD_TOTAL
        assert (await harness.kinds(session_id)).count("evaluated") == 1
    assert len(harness.grader.summarised) == 10


async def test_two_summaries_stored_together_are_written_once(harness: Harness) -> None:
    summary = await harness.grader.summarise(title="t", results=())
    for _ in range(10):
        session_id = await harness.complete()
        await harness.settle()
        assert await harness.results.reevaluate(session_id, by="test", now=1)
        jobs = await harness.results.grading_jobs(
            [(session_id, index) for index in range(3)], harness.clock()
        )
        assert len(jobs) == 3
        grades = [await harness.grader.grade(job.question, job.answer) for job in jobs]
        outcomes = [
            ((job.session_id, job.index), Graded(grade))
            for job, grade in zip(jobs, grades, strict=True)
        ]
        assert await harness.results.store_outcomes(outcomes, 2) == [True] * 3

        stored = await asyncio.gather(
            *(harness.results.store_summary(session_id, summary, 3) for _ in range(4))
        )

        assert sum(totals is not None for totals in stored) == 1
        assert (await harness.detail(session_id)).session.status == Status.EVALUATED


async def test_an_answer_whose_job_was_never_sent_is_sent_once_stale(
    harness: Harness,
) -> None:
    # The answer's write claims its job; the process died before sending it.
    session_id = await harness.complete(enqueue=False)
    await harness.settle()
    assert (await harness.detail(session_id)).session.status == Status.COMPLETED
    assert await harness.service.requeue_pending() == 0  # claimed: maybe running

    harness.clock.now += LEASE_MS + 1
    # The three answers (and, if they were graded meanwhile, the summary).
    assert await harness.service.requeue_pending() in (3, 4)
    await harness.settle()

    assert (await harness.detail(session_id)).session.status == Status.EVALUATED
    assert await harness.service.requeue_pending() == 0


async def test_a_job_that_cannot_be_sent_is_given_back_and_sent_at_the_next_pass(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broker_down(session_id: SessionId, index: int) -> None:
        raise ConnectionError("the broker is down")

    attempt = await harness.start()
    with monkeypatch.context() as patch:
        patch.setattr(harness.queue, "grade", broker_down)
        await harness.answer(attempt, "b")  # the hook does not raise
    assert (await harness.detail(attempt.session_id)).answers[0].score is None

    assert await harness.service.requeue_pending() == 1  # not stale: given back
    await harness.settle()
    assert (await harness.detail(attempt.session_id)).answers[0].score == 2


async def test_a_job_is_enqueued_again_only_once_it_went_stale(
    harness: Harness,
) -> None:
    attempt = await harness.start()
    await harness.answer(attempt, "b", enqueue=False)  # claimed by its write...
    now = harness.clock()
    claimed = await harness.results.claim_jobs(
        [(attempt.session_id, 0)], now, stale_ms=LEASE_MS
    )
    assert claimed == []  # ...so nobody else claims it; then the job was lost

    harness.clock.now = now + LEASE_MS
    assert await harness.service.requeue_pending() == 0
    harness.clock.now = now + LEASE_MS + 1
    assert await harness.service.requeue_pending() == 1
    await harness.settle()
    assert (await harness.detail(attempt.session_id)).answers[0].score == 2


async def test_an_override_recomputes_the_totals_keeps_the_model_score_and_is_audited(
    harness: Harness, interview: InterviewRecord
) -> None:
    session_id = await harness.complete()
    await harness.settle()

    await harness.service.override(
        harness.interview.id, session_id, 1, score=5, note="fine", by="recruiter:rita"
    )

    detail = await harness.detail(session_id)
    short = detail.answers[1]
    assert (short.score, short.model_score, short.override_score) == (5, 2.5, 5)
    assert (short.override_note, short.overridden_by) == ("fine", "recruiter:rita")
    assert detail.session.final_score == GOOD_TOTAL + 2.5
    assert detail.session.percentage == round(100 * (GOOD_TOTAL + 2.5) / 17, 2)
    [line] = [line for line in detail.audit if line.kind == SCORE_OVERRIDDEN]
    assert line.actor == "recruiter:rita"
    assert line.data == {
        "question_index": 1,
        "score": 5,
        "previous": 2.5,
        "note": "fine",
    }
    assert (await harness.kinds(session_id))[-1] == "score_overridden"


async def test_a_provisional_grade_is_shown_until_an_override_confirms_it(
    harness: Harness,
) -> None:
    harness.grader.provisional = True
    session_id = await harness.complete()
    await harness.settle()

    detail = await harness.detail(session_id)
    assert [answer.provisional for answer in detail.answers] == [False, True, True]
    [results] = harness.grader.summarised
    assert [result.provisional for result in results] == [False, True, True]

    await harness.service.override(
        harness.interview.id, session_id, 1, score=5, note="", by="recruiter:rita"
    )

    detail = await harness.detail(session_id)
    assert [answer.provisional for answer in detail.answers] == [False, False, True]


async def test_reevaluation_grades_the_attempt_again_and_keeps_overrides(
    harness: Harness,
) -> None:
    session_id = await harness.complete()
    await harness.settle()
    await harness.service.override(
        harness.interview.id, session_id, 0, score=1, note="", by="admin:al"
    )

    assert await harness.service.reevaluate(session_id, by="admin:al")
    await harness.settle()

    detail = await harness.detail(session_id)
    assert detail.session.status == Status.EVALUATED
    assert len(harness.grader.summarised) == 2
    assert len(harness.grader.graded) == 6
    assert detail.session.final_score == GOOD_TOTAL - 1
    [line] = [line for line in detail.audit if line.kind == REEVALUATED]
    assert line.data == {"previous_scores": {"0": 2, "1": 2.5, "2": 5}}
    kinds = [entry.kind for entry in await harness.storage.audit_log(session_id)]
    assert AuditKind.SCORE_OVERRIDDEN in kinds and AuditKind.REEVALUATED in kinds


async def test_an_attempt_in_progress_cannot_be_reevaluated(harness: Harness) -> None:
    attempt = await harness.start()
    assert not await harness.service.reevaluate(attempt.session_id, by="admin:al")
    assert not await harness.service.reevaluate(SessionId("nope"), by="admin:al")


async def test_requeue_after_a_reevaluation_finds_every_answer_when_enqueueing_failed(
    harness: Harness,
) -> None:
    session_id = await harness.complete()
    await harness.settle()
    assert await harness.results.reevaluate(session_id, by="admin:al", now=5)

    assert await harness.service.requeue_pending() == 3
    await harness.settle()
    assert (await harness.detail(session_id)).session.status == Status.EVALUATED


# -- leases (server/grading/lease.py) -------------------------------------------------


async def lease_of(harness: Harness, key: JobKey) -> Millis | None:
    query = sa.select(answers.c.enqueued_at).where(
        answers.c.session_id == key[0], answers.c.question_index == key[1]
    )
    lease: Millis | None = await harness.storage.database.fetch_val(query)
    return lease


async def answered(harness: Harness, text: str = "b") -> JobKey:
    """An answer committed whose job was claimed and never sent (enqueue=False)."""
    attempt = await harness.start()
    await harness.answer(attempt, text, enqueue=False)
    return (attempt.session_id, 0)


async def test_a_job_being_graded_keeps_its_lease_and_is_not_sent_again(
    harness: Harness,
) -> None:
    slow = await answered(harness)
    harness.grader.meet(2)  # the first grade waits for a second one
    grading = asyncio.create_task(harness.service.grade_answers([slow]))
    async with asyncio.timeout(UNIT_S):
        await harness.grader.arrived(1)

    for _ in range(3):  # three leases long, renewed every third of one
        harness.clock.now += harness.service.leases.renew_every_ms
        assert await harness.service.leases.renew() == 1
        assert await harness.service.requeue_pending() == 0
    assert await lease_of(harness, slow) == harness.clock()

    other = await answered(harness, "a")
    await harness.service.grade_answers([other])  # the second grade: both finish
    await grading
    assert (await harness.detail(slow[0])).answers[0].score == 2
    assert len(harness.grader.graded) == 2
    assert harness.service.leases.answers == set()


async def test_a_job_that_waited_for_a_worker_renews_its_lease_when_taken(
    harness: Harness,
) -> None:
    waited = await answered(harness)
    harness.clock.now += LEASE_MS - 1  # in the stream for almost a lease
    harness.grader.meet(2)
    grading = asyncio.create_task(harness.service.grade_answers([waited]))
    async with asyncio.timeout(UNIT_S):
        await harness.grader.arrived(1)
    taken_at = harness.clock()

    harness.clock.now += 2  # the lease of the claim ran out meanwhile
    assert await harness.service.requeue_pending() == 0
    assert await lease_of(harness, waited) == taken_at

    other = await answered(harness, "a")
    await harness.service.grade_answers([other])
    await grading


async def test_a_job_whose_lease_ran_out_waits_while_workers_have_messages_to_read(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = await answered(harness)  # its instance died before sending it
    given_back = await answered(harness)
    await harness.results.release_jobs([given_back])
    harness.clock.now += LEASE_MS + 1
    behind = True

    async def caught_up() -> bool:
        return not behind

    monkeypatch.setattr(harness.queue, "caught_up", caught_up)
    # A job still in the stream is not late: only the one given back goes.
    assert await harness.service.requeue_pending() == 1
    await harness.settle()
    assert await lease_of(harness, lost) is not None  # still claimed, not sent

    behind = False
    assert await harness.service.requeue_pending() == 1
    await harness.settle()
    for session_id, _ in (lost, given_back):
        assert (await harness.detail(session_id)).answers[0].score == 2


async def test_a_copy_of_a_job_waiting_for_its_retry_changes_nothing(
    harness: Harness,
) -> None:
    harness.grader.failures["mcq"] = failing(1, ModelUnavailable("429", model="m"))
    key = await answered(harness)
    await harness.service.grade_answers([key])  # fails: retried later
    assert len(harness.grader.graded) == 1

    await harness.service.grade_answers([key])  # a copy delivered meanwhile

    answer = (await harness.detail(key[0])).answers[0]
    assert (answer.evaluation_status, answer.grading_attempts) == ("pending", 1)
    assert len(harness.grader.graded) == 1
    harness.clock.now += RETRY_CAP_MS + 1
    await harness.service.grade_answers([key])  # the retry, once due
    assert (await harness.detail(key[0])).answers[0].score == 2


async def test_renewing_moves_only_the_leases_of_jobs_still_to_do(
    harness: Harness,
) -> None:
    done = await answered(harness)
    await harness.service.grade_answers([done])
    pending = await answered(harness)
    summary = await harness.complete(enqueue=False)
    await harness.service.grade_answers([(summary, i) for i in range(3)])
    harness.grader.failures["mcq"] = failing(1, ModelUnavailable("429", model="m"))
    waiting = await answered(harness)
    await harness.service.grade_answers([waiting])  # a retry is waiting
    before = {key: await lease_of(harness, key) for key in (waiting, done)}
    harness.clock.now += 1_000  # the retry is not due yet

    await harness.results.renew([waiting, done, pending], [summary], harness.clock())

    assert await lease_of(harness, pending) == harness.clock()
    assert {key: await lease_of(harness, key) for key in before} == before
    # The summary was written (the attempt's last grade): its lease stays too.
    assert (await harness.detail(summary)).session.status == Status.EVALUATED
    assert await harness.results.due_summaries(harness.clock(), stale_ms=0) == []
