"""Conditions and statements :mod:`server.storage.results` runs (SQLAlchemy Core).

The conditions are the guards of its docstring: a job is *due* when it has no live
job (never enqueued, or enqueued longer ago than ``stale_ms``) and no retry waiting;
an attempt is *ready to summarise* when it is completed, has no summary and no
pending answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record
from sqlalchemy.dialects.postgresql import ARRAY

from evaluators.grade import EvaluationStatus
from evaluators.summary import percentage
from protocol.attempt import Status
from protocol.ids import Millis, SessionId
from server.storage._results_rows import Totals
from server.storage.tables import answers, audit_json, audit_log, sessions

UNGRADED = {
    **dict.fromkeys(
        (
            *("score", "feedback", "model", "prompt_version", "raw_judgement"),
            *("review_reason", "evaluated_at", "enqueued_at", "retry_at"),
        )
    ),
    "provisional": False,
}
"""The grading columns re-evaluation clears (overrides are kept)."""

UNSUMMARISED = dict.fromkeys(
    (
        *("summary", "recommendation", "summary_raw", "evaluated_at"),
        *("summary_model", "summary_prompt_version"),
        *("summary_enqueued_at", "summary_retry_at"),
        *("final_score", "max_score", "percentage"),
    )
)

READY_TO_SUMMARISE = (
    sessions.c.status == Status.COMPLETED.value,
    sessions.c.summary.is_(None),
    ~sa.exists().where(
        answers.c.session_id == sessions.c.id,
        answers.c.evaluation_status == EvaluationStatus.PENDING.value,
    ),
)

EFFECTIVE_SCORE = sa.func.coalesce(answers.c.override_score, answers.c.score, 0.0)


def json_text(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def answer_is(session_id: SessionId, index: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (answers.c.session_id == session_id, answers.c.question_index == index)


def due(
    enqueued: sa.ColumnElement[int | None],
    retry: sa.ColumnElement[int | None],
    now: Millis,
    stale_ms: int,
) -> sa.ColumnElement[bool]:
    return sa.and_(
        sa.or_(enqueued.is_(None), enqueued < now - stale_ms),
        sa.or_(retry.is_(None), retry <= now),
    )


def answer_due(now: Millis, stale_ms: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        answers.c.evaluation_status == EvaluationStatus.PENDING.value,
        due(answers.c.enqueued_at, answers.c.retry_at, now, stale_ms),
    )


def summary_due(now: Millis, stale_ms: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        *READY_TO_SUMMARISE,
        due(sessions.c.summary_enqueued_at, sessions.c.summary_retry_at, now, stale_ms),
    )


def session(session_id: SessionId) -> sa.Select[tuple[object, ...]]:
    return sessions.select().where(sessions.c.id == session_id)


def answers_of(session_id: SessionId) -> sa.Select[tuple[object, ...]]:
    return (
        answers.select()
        .where(answers.c.session_id == session_id)
        .order_by(answers.c.question_index)
    )


async def hold_session(connection: Connection, session_id: SessionId) -> Record | None:
    """The session row, held: a no-op write takes its lock on PostgreSQL and makes
    the SQLite transaction a writer from its first statement (as storage.save_draft)."""
    statement = (
        sessions.update()
        .where(sessions.c.id == session_id)
        .values(owner_epoch=sessions.c.owner_epoch)
        .returning(sessions.c.interview_id, sessions.c.summary)
    )
    row: Record | None = await connection.fetch_one(statement)
    return row


async def write_totals(
    connection: Connection, session_id: SessionId, maximum: float
) -> Totals:
    """Total (effective scores), maximum and percentage, computed from the answers."""
    total_score = sa.func.coalesce(sa.func.sum(EFFECTIVE_SCORE), 0.0).label("total")
    query = sa.select(total_score).where(answers.c.session_id == session_id)
    total = float(await connection.fetch_val(query))
    share = percentage(total, maximum)
    await connection.execute(
        sessions.update()
        .where(sessions.c.id == session_id)
        .values(final_score=total, max_score=maximum, percentage=share)
    )
    return Totals(total, maximum, share)


async def insert_audit_line(
    connection: Connection,
    session_id: SessionId,
    *,
    at: Millis,
    actor: str,
    kind: str,
    data: Mapping[str, object],
) -> None:
    row = {
        "session_id": session_id,
        "at": at,
        "actor": actor,
        "kind": kind,
        "data": audit_json(data),
    }
    await connection.execute(audit_log.insert().values(row))


def _array(name: str, values: Sequence[object], item: Any) -> sa.ColumnElement[Any]:
    """One PostgreSQL array parameter: the statement's text does not depend on how
    many values it holds, so it is compiled and prepared once (an expanding
    ``IN (...)`` is compiled again for every length)."""
    return sa.cast(sa.bindparam(name, list(values), type_=ARRAY(item)), ARRAY(item))


def keys_match(
    keys: Sequence[tuple[str, int]], *, sqlite: bool
) -> sa.ColumnElement[bool]:
    """The answers whose (session, question index) is one of ``keys``."""
    keys = list(dict.fromkeys(keys))
    columns = sa.tuple_(answers.c.session_id, answers.c.question_index)
    if sqlite:
        return columns.in_(keys)
    table = (
        sa.func.unnest(
            _array("key_sessions", [session for session, _ in keys], sa.Text),
            _array("key_indexes", [index for _, index in keys], sa.Integer),
        )
        .table_valued("session_id", "question_index")
        .render_derived()
    )
    return columns.in_(sa.select(table.c.session_id, table.c.question_index))


def ids_match(
    column: sa.ColumnElement[str], ids: Sequence[str], *, sqlite: bool
) -> sa.ColumnElement[bool]:
    if sqlite:
        return column.in_(list(ids))
    return column == sa.any_(_array("ids", ids, sa.Text))


def store_grades(rows: Sequence[tuple[Any, ...]], now: Millis) -> sa.UpdateBase:
    """One guarded UPDATE storing many grades, for PostgreSQL: a row per grade of
    (session, index, score, feedback, model, prompt version, raw judgement,
    provisional) arrives
    as arrays (``UPDATE ... FROM unnest(...)``, which SQLite lacks); it returns the
    keys of the answers it changed, the ones still pending."""
    columns = list(zip(*rows, strict=True))
    grades = (
        sa.func.unnest(
            _array("grade_sessions", columns[0], sa.Text),
            _array("grade_indexes", columns[1], sa.Integer),
            _array("grade_scores", columns[2], sa.Double),
            _array("grade_feedback", columns[3], sa.Text),
            _array("grade_models", columns[4], sa.Text),
            _array("grade_prompts", columns[5], sa.Text),
            _array("grade_raw", columns[6], sa.Text),
            _array("grade_provisional", columns[7], sa.Boolean),
        )
        .table_valued(
            "session_id",
            "question_index",
            "score",
            "feedback",
            "model",
            "prompt_version",
            "raw_judgement",
            "provisional",
        )
        .render_derived()
    )
    return (
        answers.update()
        .where(
            answers.c.session_id == grades.c.session_id,
            answers.c.question_index == grades.c.question_index,
            answers.c.evaluation_status == EvaluationStatus.PENDING.value,
        )
        .values(
            evaluation_status=EvaluationStatus.EVALUATED.value,
            score=grades.c.score,
            feedback=grades.c.feedback,
            model=grades.c.model,
            prompt_version=grades.c.prompt_version,
            raw_judgement=grades.c.raw_judgement,
            provisional=grades.c.provisional,
            review_reason=None,
            evaluated_at=now,
            grading_attempts=answers.c.grading_attempts + 1,
        )
        .returning(answers.c.session_id, answers.c.question_index)
    )


def interviews_of(
    session_ids: Sequence[str], *, sqlite: bool
) -> sa.Select[tuple[str, str]]:
    """The interview of each of ``session_ids``: rows of (id, interview_id)."""
    return sa.select(sessions.c.id, sessions.c.interview_id).where(
        ids_match(sessions.c.id, session_ids, sqlite=sqlite)
    )
