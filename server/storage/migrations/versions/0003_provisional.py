"""Provisional grades: an answer graded by a heuristic where a model would have judged.

The offline grader's short-answer and code grades are marked ``provisional`` so that
recruiters see which scores wait for a person to confirm or override them
(``evaluators/offline.py``). Existing grades are not provisional: the flag did not
exist when they were given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "answers",
        sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("provisional")
