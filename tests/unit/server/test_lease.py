"""The leases of the jobs one process holds (server/grading/lease.py), on a fake store
that records what it was asked to renew."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from protocol.ids import Millis, SessionId
from server.errors import Unavailable
from server.grading.lease import LEASE_MS, RENEWALS_PER_LEASE, Leases
from server.storage.results import JobKey, ResultsStore

A, B, C = (SessionId("a"), 0), (SessionId("b"), 1), (SessionId("c"), 2)
NOW: Millis = 1_000_000


class FakeResults:
    """``ResultsStore.renew``: each call recorded; ``gate`` holds a call open."""

    def __init__(self) -> None:
        self.renewed: list[tuple[list[JobKey], list[SessionId], Millis]] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def renew(
        self, keys: Sequence[JobKey], summaries: Sequence[SessionId], now: Millis
    ) -> None:
        self.renewed.append((sorted(keys), sorted(summaries), now))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def results() -> FakeResults:
    return FakeResults()


def leases_of(results: FakeResults) -> Leases:
    store: ResultsStore = results  # type: ignore[assignment]  # a fake of renew only
    return Leases(store, lambda: NOW)


def test_a_held_lease_is_renewed_twice_within_the_lease() -> None:
    leases = Leases(None, lambda: NOW)  # type: ignore[arg-type]  # no store needed

    assert leases.lease_ms == LEASE_MS
    assert leases.renew_every_ms * RENEWALS_PER_LEASE == LEASE_MS
    assert 2 * leases.renew_every_ms < leases.lease_ms


def test_a_job_is_held_once_and_let_go_when_the_block_ends(
    results: FakeResults,
) -> None:
    leases = leases_of(results)

    with leases.holding([A, B, A]) as first:
        with leases.holding([B, C]) as second:
            assert leases.answers == {A, B, C}
        assert leases.answers == {A, B}

    assert first == [A, B]
    assert second == [C]  # B is graded by the first holder
    assert leases.answers == set()


def test_a_summary_is_held_once(results: FakeResults) -> None:
    leases = leases_of(results)

    with leases.holding_summary(SessionId("s")) as first:
        with leases.holding_summary(SessionId("s")) as second:
            assert leases.summaries == {"s"}
        assert leases.summaries == {"s"}

    assert (first, second) == (True, False)
    assert leases.summaries == set()


async def test_every_held_job_is_renewed_in_one_call(results: FakeResults) -> None:
    leases = leases_of(results)
    assert await leases.renew() == 0
    assert results.renewed == []  # nothing held: nothing written

    with leases.holding([A, B]), leases.holding_summary(SessionId("s")):
        assert await leases.renew() == 3

    assert results.renewed == [([A, B], ["s"], NOW)]


def test_only_a_job_that_waited_longer_than_a_renewal_is_renewed_when_taken(
    results: FakeResults,
) -> None:
    leases = leases_of(results)
    every = leases.renew_every_ms

    assert not leases.waited(NOW - every)
    assert leases.waited(NOW - every - 1)
    assert leases.waited(None)  # given back while it travelled


async def test_jobs_taken_together_share_one_renewal(results: FakeResults) -> None:
    leases = leases_of(results)
    results.gate = asyncio.Event()
    first = asyncio.create_task(leases.taken(answers=[A]))
    while not results.renewed:
        await asyncio.sleep(0)
    # These arrive while the first renewal runs: they go together in the next.
    later = [
        asyncio.create_task(leases.taken(answers=[B])),
        asyncio.create_task(leases.taken(answers=[C], summaries=[SessionId("s")])),
    ]
    await asyncio.sleep(0)
    results.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)

    assert results.renewed == [([A], [], NOW), ([B, C], ["s"], NOW)]


async def test_a_renewal_that_fails_when_jobs_are_taken_does_not_stop_them(
    results: FakeResults,
) -> None:
    leases = leases_of(results)
    results.failure = Unavailable("database unavailable: test")

    await leases.taken(answers=[A])  # does not raise: the job is graded anyway

    assert results.renewed == [([A], [], NOW)]
    with leases.holding([A]), pytest.raises(Unavailable):
        await leases.renew()  # the loop logs it and tries again
