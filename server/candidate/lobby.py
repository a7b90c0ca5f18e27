"""Finds or creates the attempt a candidate attaches to: ``start``, ``resume`` and
``restart`` (PROTOCOL.md section 1). The rules are in :mod:`protocol.admission`; this
gathers the facts for them and writes the outcome.
"""

from __future__ import annotations

import uuid

from protocol import admission
from protocol.admission import Refusal
from protocol.attempt import Attempt, begin
from protocol.audit import AuditEntry, AuditKind
from protocol.ids import InterviewId, Millis, SessionId, UserId
from protocol.messages import User
from server.candidate.sweeper import settle
from server.cluster.lock import Acquired, Superseded
from server.errors import AlreadyInProgress, Conflict
from server.services import Services


class Lobby:
    """One candidate's way in; ``holder`` names the asking connection's lock."""

    def __init__(self, services: Services, user: User, holder: str) -> None:
        self.services = services
        self.storage = services.storage
        self.user = user
        self.user_id = UserId(user.id)
        self.holder = holder

    async def active(self, now: Millis) -> Attempt | None:
        """The attempt in progress after expiring what is overdue (and storing it)."""
        attempt = await self.storage.active_attempt(self.user_id)
        if attempt is None:
            return None
        services = self.services
        attempt = await settle(
            self.storage, services.bus, attempt, now, services.grading.answers_recorded
        )
        return attempt if attempt is not None and attempt.in_progress else None

    async def start(self, interview_id: InterviewId, now: Millis) -> Attempt | Refusal:
        interview = await self.storage.get_interview(interview_id)
        invited = interview is not None and await self.storage.is_invited(
            interview_id, self.user_id
        )
        if interview is None or not invited:
            return admission.NOT_FOUND
        settings = interview.definition.settings
        used = await self.storage.count_attempts(interview_id, self.user_id)
        refusal = admission.decide_start(
            invited=invited,
            active=await self.active(now),
            used=used,
            max_attempts=settings.max_attempts,
        )
        if refusal is not None:
            return refusal
        attempt = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=interview_id,
            title=interview.definition.title,
            candidate_id=self.user_id,
            number=used + 1,
            questions=interview.definition.question_views(),
            grace_ms=settings.grace_ms,
            now=now,
        )
        return await self._create(attempt, None, now)

    async def resume(self, now: Millis) -> Attempt | Refusal:
        return await self.active(now) or admission.NO_ACTIVE

    async def restart(
        self, current: Attempt | None, now: Millis, on_superseded: Superseded
    ) -> Attempt | Refusal:
        """Abandon the attempt in progress and start the same interview again.

        ``current`` is the attempt the asking connection holds; any other must be
        free (not held by a live connection) to be abandoned.
        """
        active = await self.active(now)
        if active is None:
            return admission.NO_ACTIVE
        interview = await self.storage.get_interview(active.interview_id)
        used = await self.storage.count_attempts(active.interview_id, self.user_id)
        max_attempts = interview.definition.settings.max_attempts if interview else 0
        refusal = admission.decide_restart(
            active=active, used=used, max_attempts=max_attempts
        )
        if refusal is not None:
            return refusal
        held = current is not None and current.session_id == active.session_id
        lock = self.services.lock
        if not held:
            acquired = await lock.acquire(
                active.session_id,
                self.holder,
                takeover=False,
                on_superseded=on_superseded,
            )
            if acquired is Acquired.LOCKED:
                return admission.LOCKED
        new = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=active.interview_id,
            title=active.title,
            candidate_id=active.candidate_id,
            number=used + 1,
            questions=active.questions,
            grace_ms=active.grace_ms,
            now=now,
        )
        created = await self._create(new, active, now)
        if not held:
            await lock.release(active.session_id, self.holder)
        return created

    async def _create(
        self, attempt: Attempt, old: Attempt | None, now: Millis
    ) -> Attempt | Refusal:
        started = self._entry(AuditKind.STARTED, now, {"attempt": attempt.number})
        try:
            await self.storage.create_attempt(
                attempt, candidate_name=self.user.name, audit=[started], abandon=old
            )
        except (AlreadyInProgress, Conflict):
            return admission.IN_PROGRESS
        if old is not None:
            abandoned = self._entry(AuditKind.ABANDONED, now, {"next": attempt.number})
            await self.storage.append_audit(old.session_id, [abandoned])
            await self.services.bus.publish(old.session_id, self.holder)
        return attempt

    def _entry(
        self, kind: AuditKind, at: Millis, data: dict[str, object]
    ) -> AuditEntry:
        return AuditEntry(
            at=at, actor=f"candidate:{self.user.id}", kind=kind, data=data
        )
