"""The interview event log of the monitor socket (PROTOCOL.md section 2).

``interview_events`` holds each interview's events under a cursor that strictly
increases per interview; ``event_cursors`` holds, per interview, the last cursor
given (``last``) and the last one retention removed (``pruned``). A write that makes
events counts ``last`` up as its last statement, so on PostgreSQL it holds that row
until it commits: events of one interview commit in cursor order, and a reader that
sees cursor n sees every cursor before it (server/storage/events.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "event_cursors",
        sa.Column("interview_id", sa.String(32), primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("pruned", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "interview_events",
        sa.Column("interview_id", sa.String(32), primary_key=True),
        sa.Column("cursor", sa.BigInteger, primary_key=True),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_interview_events_at", "interview_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_interview_events_at", table_name="interview_events")
    op.drop_table("interview_events")
    op.drop_table("event_cursors")
