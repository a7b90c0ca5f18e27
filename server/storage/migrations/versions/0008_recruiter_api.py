"""The recruiter API (issue 11): archived interviews, revoked invitations, and the
indexes its lists page through.

``interviews.archived_at``: an archived interview refuses new attempts and is still
listed and shown with its results. ``invitations.revoked_at`` and ``revoked_by``: a
revoked invitation refuses new attempts; inviting the candidate again restores it.
The sessions list pages by ``(interview_id, started_at, id)`` by default, the
interviews list by ``(org, created_at, id)``: an index for each.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("interviews", sa.Column("archived_at", sa.BigInteger, nullable=True))
    op.add_column("invitations", sa.Column("revoked_at", sa.BigInteger, nullable=True))
    op.add_column("invitations", sa.Column("revoked_by", sa.Text, nullable=True))
    op.create_index(
        "ix_interviews_org_created", "interviews", ["org", "created_at", "id"]
    )
    op.create_index(
        "ix_sessions_interview_started",
        "sessions",
        ["interview_id", "started_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_interview_started", "sessions")
    op.drop_index("ix_interviews_org_created", "interviews")
    with op.batch_alter_table("invitations") as table:
        table.drop_column("revoked_by")
        table.drop_column("revoked_at")
    with op.batch_alter_table("interviews") as table:
        table.drop_column("archived_at")
