"""Schema migrations (alembic), one history for SQLite and PostgreSQL.

:func:`migrate` upgrades a database to the newest revision; running it again is a
no-op. It is a coroutine because alembic runs here on SQLAlchemy's async engine (the
drivers are aiosqlite and asyncpg); from synchronous code use
``asyncio.run(migrate(url))``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ["alembic_url", "migrate"]

_HERE = Path(__file__).parent
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def alembic_url(url: str) -> str:
    """The SQLAlchemy async-engine URL for a ``DATABASE_URL`` (``sqlite:///...``,
    ``postgresql://...``); URLs that already name a driver are kept."""
    scheme, separator, rest = url.partition("://")
    return _ASYNC_DRIVERS.get(scheme, scheme) + separator + rest


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``, by default the newest
    (idempotent)."""
    _create_sqlite_folder(url)
    engine = create_async_engine(alembic_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _create_sqlite_folder(url: str) -> None:
    parsed = make_url(alembic_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    ):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
