"""Late answers counted per question, so that the audit log keeps them within bounds.

A late answer's text is kept in the audit log (PROTOCOL.md section 1), but only
within a budget per question (``protocol/audit.py: late_answer_kept``); this table
counts every late answer of a question (how many, their characters, the last one's
time, length and digest) and how many were kept whole. Existing late answers stay in
the audit log as they are; their questions start counting from zero.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "late_answers",
        sa.Column(
            "session_id",
            sa.String(32),
            sa.ForeignKey("sessions.id"),
            primary_key=True,
        ),
        sa.Column("question_index", sa.Integer, primary_key=True),
        sa.Column("received", sa.Integer, nullable=False),
        sa.Column("received_chars", sa.BigInteger, nullable=False),
        sa.Column("kept", sa.Integer, nullable=False),
        sa.Column("kept_chars", sa.BigInteger, nullable=False),
        sa.Column("last_at", sa.BigInteger, nullable=False),
        sa.Column("last_chars", sa.BigInteger, nullable=False),
        sa.Column("last_sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("late_answers")
