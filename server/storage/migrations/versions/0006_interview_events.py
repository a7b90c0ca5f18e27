"""The interview event log of the monitor socket (PROTOCOL.md section 2).

``interview_events`` holds each interview's events. A write stores its events in its
own transaction without a cursor; they are numbered just after it commits, by a short
transaction that holds the interview's ``event_cursors`` row (``last``: the last
cursor given; ``pruned``: the last one retention removed). Numbering transactions of
one interview run one at a time, so a reader that sees cursor n sees every cursor
before it, and writers never wait for each other (server/storage/events.py).

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

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNNUMBERED = sa.text("cursor IS NULL")


def upgrade() -> None:
    op.create_table(
        "event_cursors",
        sa.Column("interview_id", sa.String(32), primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("pruned", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "interview_events",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("interview_id", sa.String(32), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=True),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "interview_id", "cursor", name="uq_interview_events_cursor"
        ),
    )
    op.create_index("ix_interview_events_at", "interview_events", ["at"])
    op.create_index(
        "ix_interview_events_unnumbered",
        "interview_events",
        ["interview_id"],
        sqlite_where=UNNUMBERED,
        postgresql_where=UNNUMBERED,
    )


def downgrade() -> None:
    op.drop_index("ix_interview_events_unnumbered", table_name="interview_events")
    op.drop_index("ix_interview_events_at", table_name="interview_events")
    op.drop_table("interview_events")
    op.drop_table("event_cursors")
