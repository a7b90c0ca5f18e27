"""Per-organisation usage: interviews and stored definition bytes, for the quota.

``POST /api/interviews`` checks and counts an organisation's interviews and their
definitions' size in one statement on this row (``server/storage/quota.py``), so
that every instance enforces ``ORG_MAX_INTERVIEWS`` and ``ORG_MAX_DEFINITION_BYTES``
against the same numbers. Existing interviews are counted in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "org_usage",
        sa.Column("org", sa.Text, primary_key=True),
        sa.Column("interviews", sa.BigInteger, nullable=False),
        sa.Column("definition_bytes", sa.BigInteger, nullable=False),
    )
    # Bytes of UTF-8, as the server counts them (length() counts characters).
    size = (
        "octet_length(definition)"
        if op.get_bind().dialect.name == "postgresql"
        else "length(CAST(definition AS BLOB))"
    )
    op.execute(
        "INSERT INTO org_usage (org, interviews, definition_bytes) "
        f"SELECT org, count(*), coalesce(sum({size}), 0) FROM interviews GROUP BY org"
    )


def downgrade() -> None:
    op.drop_table("org_usage")
