"""Initial schema: interviews, questions, invitations, sessions, answers, drafts, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Times are BIGINT epoch milliseconds, JSON is TEXT: the same on SQLite and PostgreSQL.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IN_PROGRESS = sa.text("status = 'in_progress'")


def _id(name: str = "id", *, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), primary_key=primary_key, nullable=False)


def _millis(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    _create_interviews()
    _create_sessions()
    _create_answers_and_drafts()
    _create_audit_log()


def _create_interviews() -> None:
    op.create_table(
        "interviews",
        _id(primary_key=True),
        sa.Column("org", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        _millis("created_at"),
    )
    op.create_index("ix_interviews_org", "interviews", ["org"])
    op.create_table(
        "questions",
        _id(primary_key=True),
        _id("interview_id"),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("points", sa.Float, nullable=False),
        sa.Column("time_limit_s", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(["interview_id"], ["interviews.id"]),
        sa.UniqueConstraint("interview_id", "position", name="uq_questions_position"),
    )
    op.create_table(
        "invitations",
        _id("interview_id", primary_key=True),
        sa.Column("candidate_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=True),
        _millis("created_at"),
        sa.ForeignKeyConstraint(["interview_id"], ["interviews.id"]),
    )


def _create_sessions() -> None:
    op.create_table(
        "sessions",
        _id(primary_key=True),
        _id("interview_id"),
        sa.Column("candidate_id", sa.Text, nullable=False),
        sa.Column("candidate_name", sa.Text, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("question_index", sa.Integer, nullable=False),
        sa.Column("question_count", sa.Integer, nullable=False),
        _millis("question_started_at"),
        _millis("expires_at", nullable=True),
        _millis("started_at"),
        _millis("completed_at", nullable=True),
        sa.Column("owner_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("final_score", sa.Float, nullable=True),
        sa.Column("max_score", sa.Float, nullable=True),
        sa.Column("percentage", sa.Float, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("recommendation", sa.Text, nullable=True),
        _millis("evaluated_at", nullable=True),
        sa.ForeignKeyConstraint(["interview_id"], ["interviews.id"]),
        sa.UniqueConstraint(
            "interview_id", "candidate_id", "number", name="uq_sessions_number"
        ),
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    # At most one attempt in progress per candidate, whatever the interview.
    op.create_index(
        "ux_sessions_in_progress",
        "sessions",
        ["candidate_id"],
        unique=True,
        sqlite_where=IN_PROGRESS,
        postgresql_where=IN_PROGRESS,
    )


def _create_answers_and_drafts() -> None:
    op.create_table(
        "answers",
        _id(primary_key=True),
        _id("session_id"),
        sa.Column("question_index", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        _millis("submitted_at"),
        _millis("time_taken_ms"),
        sa.Column("time_expired", sa.Boolean, nullable=False),
        sa.Column("had_draft", sa.Boolean, nullable=False),
        sa.Column(
            "evaluation_status",
            sa.String(20),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("feedback", sa.Text, nullable=True),
        _millis("evaluated_at", nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.UniqueConstraint("session_id", "question_index", name="uq_answers_question"),
    )
    op.create_table(
        "drafts",
        _id("session_id", primary_key=True),
        sa.Column("question_index", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        _millis("saved_at"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
    )


def _create_audit_log() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        _id("session_id"),
        _millis("at"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
    )
    op.create_index("ix_audit_log_session_id", "audit_log", ["session_id"])


def downgrade() -> None:
    for table in ("audit_log", "drafts", "answers", "sessions"):
        op.drop_table(table)
    for table in ("invitations", "questions", "interviews"):
        op.drop_table(table)
