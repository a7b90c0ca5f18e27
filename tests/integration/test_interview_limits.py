"""What staff input may cost a server: the bounded interview cache
(server/storage/interviews.py) and the per-organisation quota
(server/storage/quota.py), on a real database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from protocol.attempt import begin
from protocol.definition import InterviewDefinition
from protocol.ids import InterviewId, SessionId, UserId
from server.errors import QuotaExceeded
from server.storage.attempts import DatabaseStorage, InterviewRecord, Quota, migrate
from server.storage.database import Database
from server.storage.interviews import definition_bytes
from server.storage.tables import interview_row, interviews, org_usage
from tests.conftest import _database_named, _execute, run

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000
RITA = UserId("rita")


def _large(definition: InterviewDefinition, marker: int) -> InterviewDefinition:
    """``definition`` grown to about 200 KB: ten code questions at the size limits."""
    code = definition.questions[2].model_copy(
        update={"sample_solution": f"# {marker}\n" + "x" * 19_990}
    )
    return definition.model_copy(update={"questions": [code] * 10})


def _size(definition: InterviewDefinition) -> int:
    return definition_bytes(definition.model_dump_json())


async def _connected(url: str, **cache: int) -> DatabaseStorage:
    storage = DatabaseStorage(Database(url, **cache))
    await storage.connect()
    return storage


@pytest.fixture
async def bounded(database_url: str) -> AsyncIterator[DatabaseStorage]:
    storage = await _connected(database_url, cache_interviews=100, cache_bytes=1 << 20)
    try:
        yield storage
    finally:
        await storage.disconnect()


# -- the cache ------------------------------------------------------------------------


async def test_many_large_interviews_keep_the_cache_within_its_bounds(
    bounded: DatabaseStorage, definition: InterviewDefinition
) -> None:
    cache = bounded.database.interviews
    sizes = []
    for marker in range(30):  # about 6 MB of definitions against a 1 MiB cache
        large = _large(definition, marker)
        sizes.append(_size(large))
        await bounded.create_interview(
            org="acme", created_by=RITA, definition=large, now=NOW
        )

        assert len(cache) <= 100
        assert cache.bytes <= 1 << 20

    assert min(sizes) > 150_000
    assert cache.bytes == sum(sizes[-len(cache) :])  # the newest are kept
    assert len(cache) == (1 << 20) // max(sizes)


async def test_the_cache_keeps_at_most_its_count(
    database_url: str, definition: InterviewDefinition
) -> None:
    storage = await _connected(database_url, cache_interviews=3)
    try:
        for _ in range(10):
            await storage.create_interview(
                org="acme", created_by=RITA, definition=definition, now=NOW
            )
        assert len(storage.database.interviews) == 3
        assert storage.database.interviews.bytes == 3 * _size(definition)
    finally:
        await storage.disconnect()


async def test_an_evicted_interview_is_read_again_and_serves_its_attempts(
    database_url: str, definition: InterviewDefinition
) -> None:
    storage = await _connected(database_url, cache_interviews=1)
    try:
        first = await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW
        )
        attempt = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=first.id,
            title=first.title,
            candidate_id=UserId("ada"),
            number=1,
            questions=first.questions,
            grace_ms=first.settings.grace_ms,
            now=NOW,
        )
        await storage.create_attempt(attempt, candidate_name="Ada", audit=[])
        second = await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW
        )

        assert await storage.load_attempt(attempt.session_id) == attempt
        assert await storage.get_interview(first.id) == first
        assert await storage.get_interview(second.id) == second
        assert len(storage.database.interviews) == 1
    finally:
        await storage.disconnect()


async def test_the_most_recently_read_interview_is_kept(
    database_url: str, definition: InterviewDefinition
) -> None:
    storage = await _connected(database_url, cache_interviews=2)
    cache = storage.database.interviews
    try:
        created = [
            await storage.create_interview(
                org="acme", created_by=RITA, definition=definition, now=NOW
            )
            for _ in range(2)
        ]
        await storage.get_interview(created[0].id)  # now the most recent
        await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW
        )

        assert created[0].id in cache
        assert created[1].id not in cache
    finally:
        await storage.disconnect()


async def test_a_listing_neither_fills_nor_reorders_the_cache(
    database_url: str, definition: InterviewDefinition
) -> None:
    storage = await _connected(database_url, cache_interviews=2)
    try:
        for _ in range(5):
            await storage.create_interview(
                org="acme", created_by=RITA, definition=definition, now=NOW
            )
        cold = await _connected(database_url, cache_interviews=2)
        try:
            listed = await cold.list_interviews("acme")
            assert len(cold.database.interviews) == 0
        finally:
            await cold.disconnect()
        assert listed == await storage.list_interviews("acme")
        assert len(listed) == 5
    finally:
        await storage.disconnect()


async def test_a_definition_larger_than_the_cache_is_served_but_not_kept(
    database_url: str, definition: InterviewDefinition
) -> None:
    large = _large(definition, 0)
    storage = await _connected(database_url, cache_bytes=_size(large) - 1)
    try:
        record = await storage.create_interview(
            org="acme", created_by=RITA, definition=large, now=NOW
        )

        assert await storage.get_interview(record.id) == record
        assert (
            len(storage.database.interviews),
            storage.database.interviews.bytes,
        ) == (
            0,
            0,
        )
    finally:
        await storage.disconnect()


# -- the quota ------------------------------------------------------------------------


async def _usage(storage: DatabaseStorage, org: str) -> tuple[int, int] | None:
    row = await storage.database.fetch_one(
        org_usage.select().where(org_usage.c.org == org)
    )
    return None if row is None else (row["interviews"], row["definition_bytes"])


async def test_instances_sharing_a_database_never_pass_the_quota_together(
    database_url: str, definition: InterviewDefinition
) -> None:
    quota = Quota(interviews=3)
    instances = [await _connected(database_url) for _ in range(2)]
    try:
        outcomes = await asyncio.gather(
            *(
                instances[n % 2].create_interview(
                    org="acme",
                    created_by=RITA,
                    definition=definition,
                    now=NOW,
                    quota=quota,
                )
                for n in range(8)
            ),
            return_exceptions=True,
        )
        created = [o for o in outcomes if isinstance(o, InterviewRecord)]
        refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]

        assert (len(created), len(refused)) == (3, 5)
        assert {error.limit for error in refused} == {"interviews"}
        assert len(await instances[0].list_interviews("acme")) == 3
        assert await _usage(instances[1], "acme") == (3, 3 * _size(definition))
    finally:
        for instance in instances:
            await instance.disconnect()


async def test_the_byte_quota_refuses_the_definition_that_would_pass_it(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> None:
    size = _size(definition)
    quota = Quota(definition_bytes=2 * size + size // 2)
    for _ in range(2):
        await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW, quota=quota
        )

    with pytest.raises(QuotaExceeded) as refused:
        await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW, quota=quota
        )

    assert refused.value.limit == "definition_bytes"
    assert f"from {2 * size} to {3 * size} bytes" in str(refused.value)
    assert await _usage(storage, "acme") == (2, 2 * size)
    other = await storage.create_interview(
        org="globex", created_by=RITA, definition=definition, now=NOW, quota=quota
    )
    assert other.org == "globex"


async def test_a_first_definition_larger_than_the_byte_quota_is_refused(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> None:
    quota = Quota(definition_bytes=_size(definition) - 1)

    with pytest.raises(QuotaExceeded):
        await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW, quota=quota
        )

    assert await _usage(storage, "acme") is None
    assert await storage.list_interviews("acme") == []


async def test_interviews_created_without_a_quota_are_counted_too(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> None:
    for _ in range(2):
        await storage.create_interview(
            org="acme", created_by=RITA, definition=definition, now=NOW
        )

    assert await _usage(storage, "acme") == (2, 2 * _size(definition))
    with pytest.raises(QuotaExceeded):
        await storage.create_interview(
            org="acme",
            created_by=RITA,
            definition=definition,
            now=NOW,
            quota=Quota(interviews=2),
        )


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    name = f"t_{uuid.uuid4().hex[:12]}"
    run(_execute(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _database_named(server_url, name)
    finally:
        run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_the_migration_counts_the_interviews_that_exist(
    empty_database_url: str, definition: InterviewDefinition
) -> None:
    await migrate(empty_database_url, "0003")
    storage = DatabaseStorage(Database(empty_database_url))
    await storage.connect()
    try:
        titled = definition.model_copy(update={"title": "Développeur"})  # 2 bytes: é
        for org, chosen in [("acme", definition), ("acme", titled), ("globex", titled)]:
            record = InterviewRecord(
                InterviewId(uuid.uuid4().hex), org, RITA, NOW, chosen
            )
            await storage.database.execute(
                interviews.insert().values(interview_row(record))
            )
        await migrate(empty_database_url)

        assert await _usage(storage, "acme") == (
            2,
            _size(definition) + _size(titled),
        )
        assert await _usage(storage, "globex") == (1, _size(titled))
    finally:
        await storage.disconnect()
