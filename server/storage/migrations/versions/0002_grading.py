"""Grading records: per-answer grades, overrides, retries, and the attempt's summary.

Answers keep the model's grade (``score``, ``model``, ``prompt_version``,
``raw_judgement``) beside a recruiter's override (``override_*``); the effective score
is the override when set. ``grading_attempts``, ``enqueued_at`` and ``retry_at`` let
the periodic re-enqueue find every pending answer whose job is missing, stale or due
for a retry (PRODUCT.md 6.5). Sessions get the summary's provenance and the same
three bookkeeping columns for the summary job; the summary itself is written once by a
conditional update (PRODUCT.md 6.7).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

PENDING = sa.text("evaluation_status = 'pending'")
COMPLETED = sa.text("status = 'completed'")

_ANSWER_COLUMNS = (
    ("model", sa.Text),
    ("prompt_version", sa.Text),
    ("raw_judgement", sa.Text),
    ("review_reason", sa.Text),
    ("enqueued_at", sa.BigInteger),
    ("retry_at", sa.BigInteger),
    ("override_score", sa.Float),
    ("override_note", sa.Text),
    ("overridden_by", sa.Text),
    ("overridden_at", sa.BigInteger),
)
_SESSION_COLUMNS = (
    ("summary_model", sa.Text),
    ("summary_prompt_version", sa.Text),
    ("summary_raw", sa.Text),
    ("summary_enqueued_at", sa.BigInteger),
    ("summary_retry_at", sa.BigInteger),
)


def _attempts(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, nullable=False, server_default="0")


def upgrade() -> None:
    for name, kind in _ANSWER_COLUMNS:
        op.add_column("answers", sa.Column(name, kind, nullable=True))
    op.add_column("answers", _attempts("grading_attempts"))
    for name, kind in _SESSION_COLUMNS:
        op.add_column("sessions", sa.Column(name, kind, nullable=True))
    op.add_column("sessions", _attempts("summary_attempts"))
    # The re-enqueue scans: pending answers, completed attempts without a summary.
    op.create_index(
        "ix_answers_pending",
        "answers",
        ["enqueued_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_sessions_completed",
        "sessions",
        ["completed_at"],
        sqlite_where=COMPLETED,
        postgresql_where=COMPLETED,
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_completed", "sessions")
    op.drop_index("ix_answers_pending", "answers")
    with op.batch_alter_table("sessions") as batch:
        for name, _ in _SESSION_COLUMNS:
            batch.drop_column(name)
        batch.drop_column("summary_attempts")
    with op.batch_alter_table("answers") as batch:
        for name, _ in _ANSWER_COLUMNS:
            batch.drop_column(name)
        batch.drop_column("grading_attempts")
