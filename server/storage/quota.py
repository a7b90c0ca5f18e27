"""What an organisation may store: counted in the database, checked as it grows.

Each organisation has one ``org_usage`` row. Creating an interview adds to it in the
same transaction, with one upsert whose ``WHERE`` is the quota: PostgreSQL locks the
row for the upsert, so concurrent creations on any instance are counted one after
the other and never pass the quota together; SQLite has one writer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from databases.core import Connection
from sqlalchemy.dialects import postgresql, sqlite as sqlite_dialect

from server.errors import QuotaExceeded
from server.storage.tables import org_usage

DEFAULT_MAX_INTERVIEWS = 1_000
DEFAULT_MAX_DEFINITION_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Quota:
    """An organisation's limits (``ORG_MAX_INTERVIEWS``,
    ``ORG_MAX_DEFINITION_BYTES``)."""

    interviews: int = DEFAULT_MAX_INTERVIEWS
    definition_bytes: int = DEFAULT_MAX_DEFINITION_BYTES


async def count_interview(
    connection: Connection,
    org: str,
    size: int,
    quota: Quota | None,
    *,
    sqlite: bool,
) -> None:
    """Count one more interview of ``size`` bytes for ``org``.

    Raises:
        QuotaExceeded: it would take ``org`` past ``quota`` (nothing is counted).
    """
    if quota is not None and size > quota.definition_bytes:
        raise _exceeded(org, quota, interviews=0, stored=0, size=size)
    insert = (sqlite_dialect.insert if sqlite else postgresql.insert)(org_usage)
    statement = insert.values(org=org, interviews=1, definition_bytes=size)
    within = (
        sa.and_(
            org_usage.c.interviews < quota.interviews,
            org_usage.c.definition_bytes + size <= quota.definition_bytes,
        )
        if quota is not None
        else None
    )
    statement = statement.on_conflict_do_update(
        index_elements=[org_usage.c.org],
        set_={
            "interviews": org_usage.c.interviews + 1,
            "definition_bytes": org_usage.c.definition_bytes + size,
        },
        where=within,
    )
    if await connection.fetch_one(statement.returning(org_usage.c.org)) is None:
        assert quota is not None, "without a quota the upsert always applies"
        usage = await connection.fetch_one(
            org_usage.select().where(org_usage.c.org == org)
        )
        assert usage is not None, "the upsert found the row"
        raise _exceeded(
            org,
            quota,
            interviews=usage["interviews"],
            stored=usage["definition_bytes"],
            size=size,
        )


def _exceeded(
    org: str, quota: Quota, *, interviews: int, stored: int, size: int
) -> QuotaExceeded:
    if interviews >= quota.interviews:
        return QuotaExceeded(
            f"organisation {org!r} has {interviews} interviews, the most its quota "
            "allows",
            limit="interviews",
        )
    return QuotaExceeded(
        f"a definition of {size} bytes would take organisation {org!r} from "
        f"{stored} to {stored + size} bytes of definitions, over its quota of "
        f"{quota.definition_bytes}",
        limit="definition_bytes",
    )
