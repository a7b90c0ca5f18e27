"""PostgreSQL databases and Redis key prefixes of a bench run, created and removed by
``python -m bench`` (production mode) and ``python -m bench.grading``.

Nothing of the server is imported here, so that a bench can always drop what it made.
"""

from __future__ import annotations

import sqlalchemy as sa


def database_url(server_url: str, database: str) -> str:
    """``server_url`` (a PostgreSQL server URL) naming ``database`` instead."""
    url = sa.make_url(server_url).set(database=database)
    return url.render_as_string(hide_password=False)


async def admin(url: str, statement: str) -> None:
    """Run one statement (``CREATE DATABASE``, ``DROP DATABASE``) on the PostgreSQL
    server of ``url``, outside any transaction."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", "", 1), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every Redis key of ``prefix`` (and taskiq-redis's reclaim locks)."""
    from redis.asyncio import Redis

    async with Redis.from_url(url) as redis:
        for pattern in (f"{prefix}*", f"autoclaim:{prefix}*"):
            keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
            if keys:
                await redis.delete(*keys)
