"""Alembic environment: runs on the connection handed over by ``migrate``.

:func:`server.migrations.migrate` opens an async engine and passes its (sync-facing)
connection in ``config.attributes["connection"]``, so no ``alembic.ini`` is needed.
Without one (alembic's own CLI, with an ini naming this folder as
``script_location``), the database comes from ``-x url=<DATABASE_URL>``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.storage.migrations import alembic_url
from server.storage.tables import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_new_engine(url: str) -> None:
    engine = create_async_engine(alembic_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with: alembic -x url=<DATABASE_URL> ...")
    asyncio.run(run_on_new_engine(url))


main()
