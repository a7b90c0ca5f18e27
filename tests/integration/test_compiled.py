"""The compiled-statement cache gives every execution its own values."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from databases.backends.sqlite import SQLiteConnection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from protocol.definition import InterviewDefinition
from protocol.ids import UserId
from server.storage import _compiled
from server.storage.attempts import DatabaseStorage
from server.storage.results import JobKey
from tests.integration._grading import GOOD_ANSWERS, Harness

pytestmark = pytest.mark.integration

things = sa.Table(
    "cache_things",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
)


async def make_table(storage: DatabaseStorage) -> None:
    database = storage.database
    await database.execute("DROP TABLE IF EXISTS cache_things")
    await database.execute(
        "CREATE TABLE cache_things (id INTEGER PRIMARY KEY, name TEXT)"
    )
    for number in range(1, 6):
        await database.execute(things.insert().values(id=number, name=f"n{number}"))


def cached_shapes() -> int:
    return sum(len(cache) for cache in _compiled._caches.values())


async def test_a_cached_statement_is_rebound_with_each_executions_values(
    storage: DatabaseStorage,
) -> None:
    await make_table(storage)

    async def name_of(number: int) -> object:
        statement = sa.select(things.c.name).where(things.c.id == number)
        return await storage.database.fetch_val(statement)

    assert [await name_of(number) for number in (1, 2, 3, 2)] == [
        "n1",
        "n2",
        "n3",
        "n2",
    ]
    shapes = cached_shapes()
    assert [await name_of(5), await name_of(4)] == ["n5", "n4"]
    assert cached_shapes() == shapes  # the same shape, not compiled again


async def test_in_lists_of_any_length_are_not_cached_and_stay_right(
    storage: DatabaseStorage,
) -> None:
    await make_table(storage)
    for ids in ([1], [1, 2, 3], [4, 5]):
        rows = await storage.database.fetch_all(
            sa.select(things.c.id).where(things.c.id.in_(ids)).order_by(things.c.id)
        )
        assert [row[0] for row in rows] == ids


async def test_updates_with_returning_use_their_own_values(
    storage: DatabaseStorage,
) -> None:
    await make_table(storage)
    for number in (1, 3):
        statement = (
            things.update()
            .where(things.c.id == number)
            .values(name=f"renamed{number}")
            .returning(things.c.id)
        )
        assert await storage.database.fetch_val(statement) == number
    rows = await storage.database.fetch_all(sa.select(things).order_by(things.c.id))
    assert [row[1] for row in rows] == ["renamed1", "n2", "renamed3", "n4", "n5"]


def test_installing_twice_wraps_once() -> None:
    _compiled.install()
    _compiled.install()
    compile_: Any = SQLiteConnection._compile
    assert not hasattr(compile_.__wrapped__, "__wrapped__")


class CompileCounter:
    """Counts statements SQLAlchemy compiles from scratch (not the expressions
    ``databases`` turns into column names with ``str()``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = SQLCompiler.__init__

        def counting(compiler: SQLCompiler, *args: Any, **kwargs: Any) -> None:
            if isinstance(args[1], Executable):
                self.count += 1
            original(compiler, *args, **kwargs)

        monkeypatch.setattr(SQLCompiler, "__init__", counting)


async def test_the_answer_path_and_batched_grading_compile_nothing_once_warm(
    storage: DatabaseStorage,
    definition: InterviewDefinition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interview = await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=1
    )
    harness = Harness(storage, interview)
    await harness.queue.broker.startup()

    async def answered(answers: int) -> list[JobKey]:
        attempt = await harness.start()
        for text in GOOD_ANSWERS[:answers]:
            attempt = await harness.answer(attempt, text, enqueue=False)
        return [(attempt.session_id, index) for index in range(answers)]

    await harness.service.grade_answers(await answered(3))
    await harness.service.grade_answers(await answered(2))
    counter = CompileCounter(monkeypatch)
    first, second = await answered(3), await answered(1)
    assert counter.count == 0  # starting, answering, completing

    await harness.service.grade_answers(first)
    await harness.service.grade_answers(second)  # a batch of another size
    if not storage.is_sqlite:  # SQLite matches keys with IN lists of each length
        assert counter.count == 0
    assert (await harness.detail(first[0][0])).session.status == "evaluated"
