"""The patches of ``databases`` (server/storage/_databases.py), one test or more each:
every test here fails if its patch stops applying."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import databases
import pytest
import sqlalchemy as sa
from databases.backends.sqlite import SQLiteConnection, SQLiteTransaction
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from protocol.definition import InterviewDefinition
from protocol.ids import UserId
from server.storage import _databases
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


def test_another_version_of_databases_is_refused() -> None:
    _databases.require_version(_databases.WRITTEN_FOR)
    with pytest.raises(
        RuntimeError, match="patches databases 0.9.0, found databases 0.9.1"
    ):
        _databases.require_version("0.9.1")


# -- the compiled-statement cache ------------------------------------------------------


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
    shapes = _databases.cached_shapes()
    assert shapes > 0
    assert [await name_of(5), await name_of(4)] == ["n5", "n4"]
    assert _databases.cached_shapes() == shapes  # the same shape, not compiled again


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
    _databases.cache_compiled_statements()
    _databases.cache_compiled_statements()
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


async def test_a_statement_of_a_known_shape_is_not_compiled_again(
    storage: DatabaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_table(storage)
    statement = sa.select(things.c.name).where(things.c.id == 1)
    assert await storage.database.fetch_val(statement) == "n1"
    counter = CompileCounter(monkeypatch)

    statement = sa.select(things.c.name).where(things.c.id == 2)
    assert await storage.database.fetch_val(statement) == "n2"

    assert counter.count == 0


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
    if (
        not storage.database.is_sqlite
    ):  # SQLite matches keys with IN lists of each length
        assert counter.count == 0
    assert (await harness.detail(first[0][0])).session.status == "evaluated"


# -- SQLite connection reuse -----------------------------------------------------------


async def test_a_released_sqlite_connection_serves_the_next_query(
    tmp_path: Path,
) -> None:
    database = databases.Database(f"sqlite:///{tmp_path}/reuse.db")
    pool = _databases.reuse_sqlite_connections(database)
    async with database:
        assert await database.fetch_val("SELECT 1") == 1
        assert pool.idle == 1
        [kept] = pool._idle

        assert await database.fetch_val("SELECT 2") == 2

        assert pool._idle == [kept]
    await pool.close()
    assert pool.idle == 0


# -- a failed BEGIN --------------------------------------------------------------------


async def test_a_connection_whose_begin_failed_is_given_back_and_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async with databases.Database(f"sqlite:///{tmp_path}/begin.db") as database:
        failed = database.connection()
        with monkeypatch.context() as patch:
            patch.setattr(SQLiteTransaction, "start", lost)
            with pytest.raises(sqlite3.OperationalError):
                async with _databases.transaction(database, release_timeout_s=1):
                    pass

        assert failed._connection_counter == 0
        assert database.connection() is not failed  # the task starts afresh
        async with _databases.transaction(database, release_timeout_s=1) as again:
            assert await again.fetch_val("SELECT 1") == 1
