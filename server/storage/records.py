"""Stored values that are not protocol values: interviews as stored, invitees."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.attempt import QuestionView
from protocol.definition import InterviewDefinition, Settings
from protocol.ids import InterviewId, Millis, UserId


@dataclass(frozen=True, slots=True)
class InterviewRecord:
    """A stored interview; its definition includes the keys (recruiters only)."""

    id: InterviewId
    org: str
    created_by: UserId
    created_at: Millis
    definition: InterviewDefinition

    @property
    def title(self) -> str:
        return self.definition.title

    @property
    def settings(self) -> Settings:
        return self.definition.settings

    @property
    def questions(self) -> tuple[QuestionView, ...]:
        return self.definition.question_views()


@dataclass(frozen=True, slots=True)
class Invitee:
    id: UserId
    name: str
    email: str | None
