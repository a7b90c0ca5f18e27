"""The JSON the API parses and answers, as pydantic models: the route table
(:mod:`server.http.openapi`) publishes their schemas, and the handlers parse queries
and bodies with them and build every answer from them.

Answers forbid fields the model does not name, so that a value the stores add is
not served undescribed: building the answer fails in the tests instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from evaluators.grade import Recommendation
from evaluators.statistics import Bucket, QuestionStatistics, Sample
from protocol.attempt import Status
from protocol.definition import InterviewDefinition
from protocol.messages import ActiveSession
from server.storage.catalogue import (
    Evaluation,
    InterviewSort,
    InvitationState,
    Order,
    SessionSort,
)
from server.storage.results import AnswerRecord, AuditLine, LateAnswers

MAX_PAGE = 200
DEFAULT_PAGE = 50

Limit = Annotated[
    int, Field(ge=1, le=MAX_PAGE, description=f"rows per page, 1 to {MAX_PAGE}")
]
Cursor = Annotated[
    str | None,
    Field(max_length=2_000, description="the `next` of the previous page"),
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


# The attributes' docstrings are their descriptions in the OpenAPI document.
class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Query(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, use_attribute_docstrings=True
    )


class _Request(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True
    )


# -- operations -----------------------------------------------------------------------


class Health(_Answer):
    status: Literal["ok"] = "ok"


class Readiness(_Answer):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "failed"]]
    """Each dependency checked: database, broker, and redis when configured."""


# -- interviews -----------------------------------------------------------------------


class InterviewListQuery(_Query):
    archived: bool | None = Field(
        None, description="only archived (true) or only unarchived (false) ones"
    )
    sort: InterviewSort = InterviewSort.CREATED_AT
    order: Order = Order.ASC
    limit: Limit = DEFAULT_PAGE
    cursor: Cursor = None


class InterviewSummary(_Answer):
    id: str
    title: str
    question_count: int
    created_at: int
    archived_at: int | None
    """When it was archived (it takes no new attempts), or null."""


class InterviewList(_Answer):
    interviews: list[InterviewSummary]
    next: str | None
    """The cursor of the next page; null on the last."""


class InterviewDetail(InterviewSummary):
    org: str
    created_by: str
    definition: InterviewDefinition
    """With answer keys, sample solutions and tests: staff only."""


# -- invitations ----------------------------------------------------------------------

_Email = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]


class Candidate(_Request):
    id: Text
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    email: _Email | None = None


class Invitations(_Request):
    candidates: Annotated[list[Candidate], Field(min_length=1, max_length=10_000)]


class Invited(_Answer):
    invited: int
    """Candidates invited (each once, whatever the list repeats)."""


class Revocation(_Request):
    candidate_id: Text


class InvitationListQuery(_Query):
    state: list[InvitationState] = Field(
        default_factory=list, description="any of these states (repeatable)"
    )
    revoked: bool | None = Field(
        None, description="only revoked (true) or only standing (false) ones"
    )
    limit: Limit = DEFAULT_PAGE
    cursor: Cursor = None


class Invitation(_Answer):
    candidate_id: str
    name: str
    email: str | None
    invited_at: int
    revoked_at: int | None
    revoked_by: str | None
    state: InvitationState
    """From the candidate's latest attempt: invited (none), started (in progress),
    completed, evaluated."""
    attempts: int
    latest_session_id: str | None


class InvitationList(_Answer):
    invitations: list[Invitation]
    next: str | None


# -- the candidate --------------------------------------------------------------------


class Active(_Answer):
    active_session: ActiveSession | None
    server_time: int


# -- sessions -------------------------------------------------------------------------


class SessionListQuery(_Query):
    status: list[Status] = Field(
        default_factory=list, description="any of these statuses (repeatable)"
    )
    evaluation: list[Evaluation] = Field(
        default_factory=list, description="any of these grading states (repeatable)"
    )
    recommendation: list[Recommendation] = Field(
        default_factory=list, description="any of these recommendations (repeatable)"
    )
    candidate: Text | None = Field(None, description="one candidate's attempts")
    sort: SessionSort = SessionSort.STARTED_AT
    order: Order = Order.ASC
    limit: Limit = DEFAULT_PAGE
    cursor: Cursor = None


class Session(_Answer):
    id: str
    interview_id: str
    candidate_id: str
    candidate_name: str
    number: int
    status: Status
    question_index: int
    question_count: int
    started_at: int
    completed_at: int | None
    final_score: float | None
    max_score: float | None
    percentage: float | None
    recommendation: Recommendation | None
    evaluated_at: int | None


class SessionItem(Session):
    evaluation: Evaluation
    """needs_review (an answer needs a person), evaluated (nothing waits for a
    grade), or pending."""


class SessionList(_Answer):
    sessions: list[SessionItem]
    next: str | None


class SessionDetail(Session):
    summary: str | None
    summary_model: str | None
    summary_prompt_version: str | None
    summary_raw: str | None
    answers: list[AnswerRecord]
    audit: list[AuditLine]
    """The first 200 entries."""
    audit_next: str | None
    """The cursor of the rest (GET /api/sessions/{id}/audit), null at the end."""
    late_answers: list[LateAnswers]


class AuditQuery(_Query):
    after: Cursor = None
    limit: int = Field(200, ge=1, description="entries, 1 up; above 1000 is 1000")


class AuditPage(_Answer):
    session_id: str
    audit: list[AuditLine]
    next: str | None


class Override(_Request):
    score: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


class Reevaluation(_Answer):
    session_id: str
    status: Literal["completed"] = "completed"


# -- statistics -----------------------------------------------------------------------


class StatisticsQuery(_Query):
    attempts: Sample = Field(
        Sample.FIRST,
        description="first: each candidate's first evaluated attempt; all: every one",
    )


class Statistics(_Answer):
    interview_id: str
    sample: Sample
    count: int
    """Evaluated attempts counted."""
    max_score: float
    mean_score: float | None
    median_score: float | None
    standard_deviation: float | None
    mean_percentage: float | None
    histogram: list[Bucket]
    """Attempts per tenth of the total percentage (100 % in the last)."""
    questions: list[QuestionStatistics]
