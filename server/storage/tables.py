"""The tables the stores query (SQLAlchemy Core), and their rows.

The schema itself is created by the alembic history in ``server/storage/migrations``;
a test checks that the migrated database matches these definitions. Times are BIGINT
epoch milliseconds and JSON is stored as TEXT, identically on SQLite and PostgreSQL.
The functions after the tables convert between rows and :mod:`protocol` values,
without I/O; the last ones run statements inside a store's write transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record
from sqlalchemy.dialects import postgresql, sqlite as sqlite_dialect

from evaluators.grade import EvaluationStatus
from protocol.attempt import Answer, Attempt, Draft, QuestionView, Status
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import InterviewDefinition
from protocol.ids import InterviewId, Millis, SessionId, UserId
from server.storage.records import InterviewRecord, Invitee

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT.
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

IN_PROGRESS = sa.text("status = 'in_progress'")
COMPLETED = sa.text("status = 'completed'")
PENDING = sa.text(f"evaluation_status = '{EvaluationStatus.PENDING.value}'")

metadata = sa.MetaData()

interviews = sa.Table(
    "interviews",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("org", sa.Text, nullable=False, index=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Migration 0008: an archived interview takes no new attempts (admission.py).
    sa.Column("archived_at", sa.BigInteger, nullable=True),
    sa.Index("ix_interviews_org_created", "org", "created_at", "id"),
)

# Migration 0004: what each organisation stores, counted as interviews are created
# (server/storage/quota.py); a row per organisation, so that every instance checks
# its quota against the same numbers.
org_usage = sa.Table(
    "org_usage",
    metadata,
    sa.Column("org", sa.Text, primary_key=True),
    sa.Column("interviews", sa.BigInteger, nullable=False),
    sa.Column("definition_bytes", sa.BigInteger, nullable=False),
)

questions = sa.Table(
    "questions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "interview_id", sa.String(32), sa.ForeignKey("interviews.id"), nullable=False
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("points", sa.Float, nullable=False),
    sa.Column("time_limit_s", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.UniqueConstraint("interview_id", "position", name="uq_questions_position"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column(
        "interview_id", sa.String(32), sa.ForeignKey("interviews.id"), primary_key=True
    ),
    sa.Column("candidate_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Migration 0008: a revoked invitation refuses new attempts; inviting again
    # restores it.
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_by", sa.Text, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "interview_id", sa.String(32), sa.ForeignKey("interviews.id"), nullable=False
    ),
    sa.Column("candidate_id", sa.Text, nullable=False),
    sa.Column("candidate_name", sa.Text, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("question_index", sa.Integer, nullable=False),
    sa.Column("question_count", sa.Integer, nullable=False),
    sa.Column("question_started_at", sa.BigInteger, nullable=False),
    # deadline + grace of the current question while in progress, else NULL: the
    # sweeper's index (due_attempts).
    sa.Column("expires_at", sa.BigInteger, nullable=True, index=True),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
    sa.Column("owner_epoch", sa.Integer, nullable=False, server_default="0"),
    # Written by grading when the summary is stored (server/storage/results.py).
    sa.Column("final_score", sa.Float, nullable=True),
    sa.Column("max_score", sa.Float, nullable=True),
    sa.Column("percentage", sa.Float, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("recommendation", sa.Text, nullable=True),
    sa.Column("evaluated_at", sa.BigInteger, nullable=True),
    # Migration 0002: the summary's provenance and its job (server/storage/results.py).
    sa.Column("summary_model", sa.Text, nullable=True),
    sa.Column("summary_prompt_version", sa.Text, nullable=True),
    sa.Column("summary_raw", sa.Text, nullable=True),
    sa.Column("summary_enqueued_at", sa.BigInteger, nullable=True),
    sa.Column("summary_retry_at", sa.BigInteger, nullable=True),
    sa.Column("summary_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint(
        "interview_id", "candidate_id", "number", name="uq_sessions_number"
    ),
    sa.Index(
        "ix_sessions_completed",
        "completed_at",
        sqlite_where=COMPLETED,
        postgresql_where=COMPLETED,
    ),
    # Migration 0008: the recruiters' list pages in this order by default
    # (server/storage/catalogue.py).
    sa.Index("ix_sessions_interview_started", "interview_id", "started_at", "id"),
    sa.Index(
        "ux_sessions_in_progress",
        "candidate_id",
        unique=True,
        sqlite_where=IN_PROGRESS,
        postgresql_where=IN_PROGRESS,
    ),
)

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False
    ),
    sa.Column("question_index", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("submitted_at", sa.BigInteger, nullable=False),
    sa.Column("time_taken_ms", sa.BigInteger, nullable=False),
    sa.Column("time_expired", sa.Boolean, nullable=False),
    sa.Column("had_draft", sa.Boolean, nullable=False),
    sa.Column(
        "evaluation_status",
        sa.String(20),
        nullable=False,
        server_default=EvaluationStatus.PENDING.value,
    ),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("feedback", sa.Text, nullable=True),
    sa.Column("evaluated_at", sa.BigInteger, nullable=True),
    # Migration 0002: grading records, the job's bookkeeping, a recruiter's override.
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("prompt_version", sa.Text, nullable=True),
    sa.Column("raw_judgement", sa.Text, nullable=True),
    sa.Column("review_reason", sa.Text, nullable=True),
    sa.Column("grading_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("enqueued_at", sa.BigInteger, nullable=True),
    sa.Column("retry_at", sa.BigInteger, nullable=True),
    sa.Column("override_score", sa.Float, nullable=True),
    sa.Column("override_note", sa.Text, nullable=True),
    sa.Column("overridden_by", sa.Text, nullable=True),
    sa.Column("overridden_at", sa.BigInteger, nullable=True),
    # Migration 0003: graded by a heuristic where a model would have judged.
    sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("session_id", "question_index", name="uq_answers_question"),
    sa.Index(
        "ix_answers_pending",
        "enqueued_at",
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    ),
)

drafts = sa.Table(
    "drafts",
    metadata,
    sa.Column(
        "session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True
    ),
    sa.Column("question_index", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("saved_at", sa.BigInteger, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column(
        "session_id",
        sa.String(32),
        sa.ForeignKey("sessions.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)

# Migration 0004: one question's late answers, counted (server/storage/_audit.py).
late_answers = sa.Table(
    "late_answers",
    metadata,
    sa.Column(
        "session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True
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

# Migration 0006: the interview event log of the monitor socket
# (server/storage/events.py): events are stored unnumbered with their change and
# numbered after it commits. No foreign keys: retention deletes events on its own.
UNNUMBERED = sa.text("cursor IS NULL")

event_cursors = sa.Table(
    "event_cursors",
    metadata,
    sa.Column("interview_id", sa.String(32), primary_key=True),
    sa.Column("last", sa.BigInteger, nullable=False),
    sa.Column("pruned", sa.BigInteger, nullable=False),
)

interview_events = sa.Table(
    "interview_events",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("interview_id", sa.String(32), nullable=False),
    sa.Column("cursor", sa.BigInteger, nullable=True),
    sa.Column("session_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False, index=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.UniqueConstraint("interview_id", "cursor", name="uq_interview_events_cursor"),
    sa.Index(
        "ix_interview_events_unnumbered",
        "interview_id",
        sqlite_where=UNNUMBERED,
        postgresql_where=UNNUMBERED,
    ),
)

# Migration 0007: webhooks (server/storage/webhooks.py, server/storage/_outbox.py).
# An organisation's endpoints with their secrets; each event once (its body as
# signed); a delivery per event and endpoint (the outbox: written in the
# transaction of the change it reports); every attempt of a delivery (the log).
PENDING_DELIVERY = sa.text("status = 'pending'")

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("org", sa.Text, nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    # A JSON list of event types, sorted.
    sa.Column("event_types", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    # Why the server disabled it ("gone": a 410), NULL otherwise.
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("previous_secret", sa.Text, nullable=True),
    sa.Column("previous_secret_until", sa.BigInteger, nullable=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # msg_<hex>: webhook-id
    sa.Column("org", sa.Text, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # The order of the log and its cursor.
    sa.Column("seq", AutoId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column(
        "event_id", sa.String(40), sa.ForeignKey("webhook_events.id"), nullable=False
    ),
    sa.Column(
        "endpoint_id",
        sa.String(32),
        sa.ForeignKey("webhook_endpoints.id"),
        nullable=False,
    ),
    sa.Column("status", sa.String(20), nullable=False),
    # Attempts ever (they number the log), and in this run (they pick the delay).
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
    # A dispatcher's claim: until then nobody else sends it; a lapsed one is taken.
    sa.Column("lease_until", sa.BigInteger, nullable=True),
    sa.Column("lease_token", sa.String(32), nullable=True),
    sa.Column("last_attempt_at", sa.BigInteger, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "seq"),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        sqlite_where=PENDING_DELIVERY,
        postgresql_where=PENDING_DELIVERY,
    ),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(32),
        sa.ForeignKey("webhook_deliveries.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("response_excerpt", sa.Text, nullable=True),
    sa.Column("signatures", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
)

# Rows <-> protocol values. Times stay integers; JSON is serialised here.

SESSION_WITH_DRAFT = sa.select(
    sessions,
    drafts.c.text.label("draft_text"),
    drafts.c.saved_at.label("draft_saved_at"),
).select_from(
    sessions.outerjoin(
        drafts,
        sa.and_(
            drafts.c.session_id == sessions.c.id,
            drafts.c.question_index == sessions.c.question_index,
        ),
    )
)


def guarded(
    session_id: SessionId, question_index: int, fence: int | None
) -> list[sa.ColumnElement[bool]]:
    """The optimistic-concurrency guard of design.md, "Time and truth"."""
    conditions = [
        sessions.c.id == session_id,
        sessions.c.status == Status.IN_PROGRESS.value,
        sessions.c.question_index == question_index,
    ]
    if fence is not None:
        conditions.append(sessions.c.owner_epoch == fence)
    return conditions


def progress(attempt: Attempt) -> dict[str, object]:
    """The session columns that change as an attempt advances."""
    return {
        "status": attempt.status.value,
        "question_index": attempt.question_index,
        "question_started_at": attempt.question_started_at,
        "completed_at": attempt.completed_at,
        "expires_at": attempt.closes_at if attempt.in_progress else None,
    }


def session_row(attempt: Attempt, candidate_name: str) -> dict[str, object]:
    return {
        "id": attempt.session_id,
        "interview_id": attempt.interview_id,
        "candidate_id": attempt.candidate_id,
        "candidate_name": candidate_name,
        "number": attempt.number,
        "question_count": attempt.question_count,
        "started_at": attempt.started_at,
        "owner_epoch": 0,
        **progress(attempt),
    }


def answer_rows(
    session_id: SessionId, recorded: Sequence[Answer], claimed_at: Millis | None = None
) -> list[dict[str, object]]:
    return [
        {
            # databases ignores Python-side column defaults: ids are made here.
            "id": uuid.uuid4().hex,
            "session_id": session_id,
            "question_index": answer.question_index,
            "text": answer.text,
            "submitted_at": answer.submitted_at,
            "time_taken_ms": answer.time_taken_ms,
            "time_expired": answer.time_expired,
            "had_draft": answer.had_draft,
            "evaluation_status": EvaluationStatus.PENDING.value,
            # The write claims the answer's grading job: the shell sends it next
            # (server.grading.service), so no second transaction is needed to claim
            # it. As of the commit: an expired answer's submission time may be long
            # past.
            "enqueued_at": answer.submitted_at if claimed_at is None else claimed_at,
        }
        for answer in recorded
    ]


def audit_json(data: Mapping[str, object]) -> str:
    """An audit entry's ``data`` as stored: candidates' text unescaped (one
    character, not a 6- or 12-byte ``\\u`` escape, per non-ASCII character), except
    when it holds lone surrogates, which no UTF-8 column accepts."""
    text = json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(dict(data), separators=(",", ":"))
    return text


def audit_row(session_id: SessionId, entry: AuditEntry) -> dict[str, object]:
    return {
        "session_id": session_id,
        "at": entry.at,
        "actor": entry.actor,
        "kind": entry.kind.value,
        "data": audit_json(entry.data),
    }


def audit_from(row: Record) -> AuditEntry:
    return AuditEntry(
        at=row["at"],
        actor=row["actor"],
        kind=AuditKind(row["kind"]),
        data=json.loads(row["data"]),
    )


def attempt_from(
    row: Record,
    answered: Sequence[Record],
    definition: InterviewDefinition,
    views: tuple[QuestionView, ...],
) -> Attempt:
    """Rebuild an attempt from its :data:`SESSION_WITH_DRAFT` row and answer rows."""
    status = Status(row["status"])
    return Attempt(
        session_id=SessionId(row["id"]),
        interview_id=InterviewId(row["interview_id"]),
        title=definition.title,
        candidate_id=UserId(row["candidate_id"]),
        number=row["number"],
        questions=views,
        grace_ms=definition.settings.grace_ms,
        status=status,
        question_index=row["question_index"],
        question_started_at=row["question_started_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        answers=tuple(_answer_from(answer) for answer in answered),
        draft=_draft_from(row) if status is Status.IN_PROGRESS else None,
    )


def _answer_from(row: Record) -> Answer:
    return Answer(
        question_index=row["question_index"],
        text=row["text"],
        submitted_at=row["submitted_at"],
        time_taken_ms=row["time_taken_ms"],
        time_expired=bool(row["time_expired"]),
        had_draft=bool(row["had_draft"]),
    )


def _draft_from(row: Record) -> Draft | None:
    if row["draft_saved_at"] is None:
        return None
    return Draft(
        question_index=row["question_index"],
        text=row["draft_text"],
        saved_at=row["draft_saved_at"],
    )


def interview_from(row: Record) -> InterviewRecord:
    return InterviewRecord(
        id=InterviewId(row["id"]),
        org=row["org"],
        created_by=UserId(row["created_by"]),
        created_at=row["created_at"],
        definition=InterviewDefinition.model_validate_json(row["definition"]),
    )


def interview_row(record: InterviewRecord) -> dict[str, object]:
    definition = record.definition
    return {
        "id": record.id,
        "org": record.org,
        "title": definition.title,
        "description": definition.description,
        "settings": definition.settings.model_dump_json(),
        "definition": definition.model_dump_json(),
        "created_by": record.created_by,
        "created_at": record.created_at,
    }


def question_rows(record: InterviewRecord) -> list[dict[str, object]]:
    """One row per question; ``body`` is the full definition, keys included."""
    return [
        {
            "id": uuid.uuid4().hex,
            "interview_id": record.id,
            "position": position,
            "type": question.type,
            "text": question.text,
            "points": question.points,
            "time_limit_s": question.time_limit_s,
            "body": question.model_dump_json(),
        }
        for position, question in enumerate(record.definition.questions)
    ]


def invitation_rows(
    interview_id: InterviewId, invitees: Iterable[Invitee], now: Millis
) -> list[dict[str, object]]:
    return [
        {
            "interview_id": interview_id,
            "candidate_id": invitee.id,
            "name": invitee.name,
            "email": invitee.email,
            "created_at": now,
            "revoked_at": None,
            "revoked_by": None,
        }
        for invitee in invitees
    ]


# Statements that storage methods run inside their write transactions.


def upsert(
    table: sa.Table,
    rows: Sequence[Mapping[str, object]],
    update: Sequence[str],
    *,
    sqlite: bool,
) -> sa.Insert:
    """INSERT, or on a primary-key conflict UPDATE the ``update`` columns."""
    insert = sqlite_dialect.insert if sqlite else postgresql.insert
    statement = insert(table).values(rows)
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key),
        set_={name: statement.excluded[name] for name in update},
    )


async def update_guarded(
    connection: Connection,
    guard: list[sa.ColumnElement[bool]],
    values: Mapping[str, object],
) -> bool:
    """Whether the guarded UPDATE of the session applied (False: a conflict)."""
    statement = sessions.update().where(*guard).values(values)
    # RETURNING, because databases gives no row count for a PostgreSQL UPDATE.
    return await connection.fetch_one(statement.returning(sessions.c.id)) is not None


async def insert_answers(
    connection: Connection,
    session_id: SessionId,
    recorded: Sequence[Answer],
    claimed_at: Millis | None = None,
) -> None:
    # A row at a time: a single-row statement has one shape, compiled once
    # (server/storage/_databases.py); a multi-row VALUES or an IN list is compiled
    # every time.
    for row in answer_rows(session_id, recorded, claimed_at):
        await connection.execute(answers.insert().values(row))
    # The drafts of answered questions are never read again.
    for answer in recorded:
        if answer.had_draft:
            await connection.execute(
                drafts.delete().where(
                    drafts.c.session_id == session_id,
                    drafts.c.question_index == answer.question_index,
                )
            )
