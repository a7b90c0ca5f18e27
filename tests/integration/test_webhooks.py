"""The webhook outbox and dispatcher on a real database, sending to a real receiver
on 127.0.0.1; signatures are verified with the ``standardwebhooks`` reference.

The dispatcher runs on a fake clock that starts at the wall clock (the reference
library refuses timestamps more than 5 minutes off), so retries are tested by moving
the clock, never by waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from protocol.attempt import change_between, submit
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import InterviewDefinition, parse_definition
from protocol.ids import Millis, UserId
from protocol.webhooks.events import EventType
from protocol.webhooks.schedule import SECOND, DeliveryStatus, Outcome, Verdict
from server.errors import Conflict
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.tables import webhook_events
from server.storage.webhooks import (
    AttemptResult,
    Claim,
    DeliveryRecord,
    EndpointRecord,
    WebhookStore,
)
from server.webhooks.dispatcher import Dispatcher
from server.webhooks.sender import EXCERPT_BYTES
from tests.e2e._client import UNIT_S
from tests.integration._grading import FakeClock, Harness
from tests.integration._webhooks import (
    complete,
    deliver,
    endpoint,
    make_dispatcher,
    new_secret,
    start,
    wall,
)
from tests.receiver import Receiver, Reply, receiving

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall())


@pytest.fixture
def store(storage: DatabaseStorage) -> WebhookStore:
    return WebhookStore(storage.database)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@pytest.fixture
async def dispatcher(
    store: WebhookStore, clock: FakeClock
) -> AsyncIterator[Dispatcher]:
    made = make_dispatcher(store, clock)
    yield made
    await made.sender.close()


async def deliveries(store: WebhookStore, hook: EndpointRecord) -> list[DeliveryRecord]:
    page = await store.deliveries(hook.org, hook.id, after=None, limit=200)
    assert page is not None
    return list(page.deliveries)


async def only_delivery(store: WebhookStore, hook: EndpointRecord) -> DeliveryRecord:
    [delivery] = await deliveries(store, hook)
    return delivery


@pytest.fixture
def one_question() -> InterviewDefinition:
    return parse_definition(
        {
            "title": "One question",
            "questions": [
                {
                    "type": "mcq",
                    "text": "Which is a prime?",
                    "points": 2,
                    "time_limit_s": 30,
                    "options": [{"id": "a", "text": "4"}, {"id": "b", "text": "7"}],
                    "correct_answer": "b",
                }
            ],
        }
    )


# -- the outbox -----------------------------------------------------------------------


async def test_a_completion_queues_a_delivery_for_each_enabled_subscribed_endpoint(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
) -> None:
    url = "http://127.0.0.1:9/hook"
    everything = await endpoint(store, url, clock)
    completed_only = await endpoint(
        store, url, clock, types=[EventType.SESSION_COMPLETED]
    )
    evaluated_only = await endpoint(
        store, url, clock, types=[EventType.SESSION_EVALUATED]
    )
    disabled = await endpoint(store, url, clock, enabled=False)
    elsewhere = await endpoint(store, url, clock, org="globex")

    session_id = await complete(storage, interview, clock)

    for hook in (everything, completed_only):
        delivery = await only_delivery(store, hook)
        assert delivery.event_type == "session.completed"
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.next_attempt_at == clock()
    for hook in (evaluated_only, disabled, elsewhere):
        assert await deliveries(store, hook) == []
    first, second = (
        await deliveries(store, everything),
        await deliveries(store, completed_only),
    )
    assert first[0].event_id == second[0].event_id  # one message, two deliveries
    assert first[0].event_id.startswith("msg_")
    assert session_id


async def test_a_completion_that_conflicts_queues_nothing(
    storage: DatabaseStorage,
    store: WebhookStore,
    one_question: InterviewDefinition,
    clock: FakeClock,
) -> None:
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=one_question, now=clock()
    )
    hook = await endpoint(store, "http://127.0.0.1:9/hook", clock)
    attempt = await start(storage, interview, clock)
    clock.now += 1_000
    after = submit(attempt, 0, "b", clock()).attempt
    done = [AuditEntry(clock(), "candidate:ada", AuditKind.COMPLETED)]
    await storage.commit(change_between(attempt, after), fence=None, audit=done)

    with pytest.raises(Conflict):  # the same change again: the guard refuses it
        await storage.commit(change_between(attempt, after), fence=None, audit=done)

    assert len(await deliveries(store, hook)) == 1


async def test_a_summary_and_an_override_queue_their_events(
    storage: DatabaseStorage, store: WebhookStore, interview: InterviewRecord
) -> None:
    harness = Harness(storage, interview)
    await harness.queue.broker.startup()
    hook = await endpoint(store, "http://127.0.0.1:9/hook", harness.clock)
    session_id = await harness.complete()
    await harness.settle()
    await harness.service.override(
        interview.id, session_id, 1, score=4.0, note="good", by="recruiter:rita"
    )

    evaluated, overridden = [
        json.loads((await store_body(store, delivery)).decode())
        for delivery in reversed(await deliveries(store, hook))
    ]
    assert evaluated["type"] == "session.evaluated"
    assert evaluated["data"] | {"session_id": session_id} == evaluated["data"]
    assert evaluated["data"]["recommendation"] == "hire"
    assert evaluated["data"]["max_score"] == 17
    assert overridden["type"] == "score.overridden"
    assert overridden["data"]["question_index"] == 1
    assert overridden["data"]["score"] == 4.0
    assert overridden["data"]["previous"] == 2.5
    assert overridden["data"]["overridden_by"] == "recruiter:rita"


async def store_body(store: WebhookStore, delivery: DeliveryRecord) -> bytes:
    body = await store.database.fetch_val(
        webhook_events.select()
        .with_only_columns(webhook_events.c.body)
        .where(webhook_events.c.id == delivery.event_id)
    )
    return str(body).encode()


# -- sending --------------------------------------------------------------------------


async def test_a_delivery_is_signed_as_standard_webhooks_and_verifies(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    hook = await endpoint(store, receiver.url(), clock)
    session_id = await complete(storage, interview, clock)

    assert await deliver(dispatcher) == 1

    request = await receiver.next()
    payload = Webhook(hook.secrets.current).verify(request.body, request.headers)
    assert payload["type"] == "session.completed"
    assert payload["data"]["session_id"] == session_id
    assert payload["data"]["interview_id"] == interview.id
    assert payload["data"]["completed_at"] == clock()
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-timestamp"] == str(clock() // 1000)
    delivery = await only_delivery(store, hook)
    assert request.headers["webhook-id"] == delivery.event_id
    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.delivered_at == clock()
    found = await store.delivery("acme", hook.id, delivery.id)
    assert found is not None
    [logged] = found[1]
    assert (logged.number, logged.status_code, logged.signatures) == (1, 204, 1)
    assert logged.error is None


async def test_during_a_rotation_both_secrets_sign_until_the_grace_ends(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    hook = await endpoint(store, receiver.url(), clock)
    old = hook.secrets.current
    rotated = await store.rotate_secret(
        "acme", hook.id, new_secret(), now=clock(), grace_ms=60 * SECOND
    )
    assert rotated is not None
    new = rotated.secrets.current

    await complete(storage, interview, clock)
    await deliver(dispatcher)
    during = await receiver.next()

    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(during.body, during.headers)

    clock.now += 60 * SECOND
    await complete(storage, interview, clock)
    await deliver(dispatcher)
    after = await receiver.next()

    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


async def test_a_failure_is_retried_on_the_schedule_under_the_same_id(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    receiver.replies.append(Reply(500, body=b"try later"))
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)
    first_at = clock()

    await deliver(dispatcher)
    failed = await only_delivery(store, hook)
    assert failed.status is DeliveryStatus.PENDING
    assert failed.next_attempt_at == first_at + 5 * SECOND
    assert (failed.attempts, failed.last_status_code) == (1, 500)

    clock.now += 5 * SECOND - 1
    assert await deliver(dispatcher) == 0  # not due yet
    clock.now += 1
    assert await deliver(dispatcher) == 1

    first, second = await receiver.next(), await receiver.next()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) == first_at // 1000 + 5
    assert Webhook(hook.secrets.current).verify(second.body, second.headers)
    delivered = await only_delivery(store, hook)
    assert delivered.status is DeliveryStatus.DELIVERED
    found = await store.delivery("acme", hook.id, delivered.id)
    assert found is not None
    assert [(a.number, a.status_code) for a in found[1]] == [(2, 204), (1, 500)]
    assert found[1][1].response_excerpt == "try later"
    assert found[1][1].next_attempt_at == first_at + 5 * SECOND


async def test_retry_after_postpones_the_next_attempt(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    receiver.replies.append(Reply(503, headers=(("Retry-After", "120"),)))
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)

    await deliver(dispatcher)

    delivery = await only_delivery(store, hook)
    assert delivery.next_attempt_at == clock() + 120 * SECOND
    clock.now += 119 * SECOND
    assert await deliver(dispatcher) == 0


async def test_410_gone_disables_the_endpoint_and_fails_the_delivery(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    receiver.default = Reply(410)
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)

    await deliver(dispatcher)

    delivery = await only_delivery(store, hook)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    disabled = await store.get_endpoint("acme", hook.id)
    assert disabled is not None
    assert (disabled.enabled, disabled.disabled_reason) == (False, "gone")
    await complete(storage, interview, clock)
    clock.now += 3_600 * SECOND
    assert await deliver(dispatcher) == 0
    assert len(receiver.received) == 1


async def test_the_eighth_failure_fails_the_delivery_for_good(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    receiver.default = Reply(500)
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)
    start_at = clock()

    while await deliver(dispatcher):
        delivery = await only_delivery(store, hook)
        if delivery.next_attempt_at is not None:
            clock.now = delivery.next_attempt_at

    delivery = await only_delivery(store, hook)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 8)
    assert len(receiver.received) == 8
    # 5 s + 5 min + 30 min + 2 h + 5 h + 10 h + 10 h after the first attempt.
    assert clock() - start_at == (5 + 300 + 1800 + 7200 + 18000 + 72000) * SECOND


async def test_a_redirect_is_a_failure_and_is_not_followed(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.replies.append(Reply(307, headers=(("Location", elsewhere),)))
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)

    await deliver(dispatcher)

    assert [request.path for request in receiver.received] == ["/hook"]
    delivery = await only_delivery(store, hook)
    assert (delivery.status, delivery.last_status_code) == (
        DeliveryStatus.PENDING,
        307,
    )


async def test_an_inner_address_is_refused_when_the_attempt_is_made(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    # Saved while allowed (or rebound since): the check before the attempt refuses.
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)
    strict = make_dispatcher(store, clock, allow_private=False)
    try:
        await deliver(strict)
    finally:
        await strict.sender.close()

    assert receiver.received == []
    delivery = await only_delivery(store, hook)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_status_code is None
    assert delivery.last_error is not None
    assert "127.0.0.1 is a loopback address" in delivery.last_error


async def test_a_receiver_slower_than_the_time_limit_is_a_failure(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    receiver.replies.append(Reply(204, delay_s=UNIT_S))
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)
    hasty = make_dispatcher(store, clock, timeout_s=0.2)
    try:
        await deliver(hasty)
    finally:
        await hasty.sender.close()

    delivery = await only_delivery(store, hook)
    assert delivery.last_error == "timed out after 0.2 s"
    assert delivery.status is DeliveryStatus.PENDING


async def test_only_the_start_of_a_long_answer_is_kept(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    receiver.replies.append(Reply(500, body=b"x" * 1_000_000))
    hook = await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)

    await deliver(dispatcher)

    delivery = await only_delivery(store, hook)
    found = await store.delivery("acme", hook.id, delivery.id)
    assert found is not None
    assert found[1][0].response_excerpt == "x" * EXCERPT_BYTES


# -- claims and leases ----------------------------------------------------------------


async def test_a_delivery_whose_claimer_died_is_claimed_again_once_its_lease_lapses(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
) -> None:
    hook = await endpoint(store, "http://127.0.0.1:9/hook", clock)
    await complete(storage, interview, clock)
    [dead] = await store.claim(clock(), lease_ms=10 * SECOND, limit=10)

    assert await store.claim(clock() + 10 * SECOND - 1, lease_ms=1, limit=10) == []
    [again] = await store.claim(clock() + 10 * SECOND, lease_ms=10 * SECOND, limit=10)

    assert again.delivery_id == dead.delivery_id
    assert again.lease_token != dead.lease_token
    late, current = (
        _delivered(claim, clock() + 10 * SECOND) for claim in (dead, again)
    )
    assert await store.record([late, current]) == [False, True]
    delivery = await only_delivery(store, hook)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


def _delivered(claim: Claim, at: Millis) -> AttemptResult:
    return AttemptResult(
        claim=claim,
        at=at,
        status_code=200,
        duration_ms=1,
        error=None,
        response_excerpt="",
        signatures=1,
        outcome=Outcome(Verdict.DELIVERED),
    )


async def test_claimers_at_once_never_share_a_delivery(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
) -> None:
    hooks = [await endpoint(store, "http://127.0.0.1:9/h", clock) for _ in range(5)]
    for _ in range(6):
        await complete(storage, interview, clock)

    batches = await asyncio.gather(
        *(store.claim(clock(), lease_ms=60 * SECOND, limit=8) for _ in range(6))
    )

    claimed = [claim.delivery_id for batch in batches for claim in batch]
    assert len(claimed) == len(set(claimed)) == len(hooks) * 6


async def test_a_stopping_dispatcher_gives_its_claims_back(
    storage: DatabaseStorage,
    store: WebhookStore,
    interview: InterviewRecord,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    receiver.default = Reply(204, delay_s=UNIT_S)
    await endpoint(store, receiver.url(), clock)
    await complete(storage, interview, clock)
    running = make_dispatcher(store, clock)
    task = asyncio.create_task(running.run())
    await receiver.next()  # the attempt is in flight

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [claim] = await store.claim(clock(), lease_ms=SECOND, limit=10)
    assert claim.tries == 0  # unrecorded, and claimable at once
