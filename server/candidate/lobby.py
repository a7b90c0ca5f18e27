"""Finds or creates the attempt a candidate attaches to: ``start``, ``resume`` and
``restart`` (PROTOCOL.md section 1). The rules are in :mod:`protocol.admission`; this
gathers the facts for them and writes the outcome.
"""

from __future__ import annotations

import uuid

from protocol import admission, audit
from protocol.admission import Refusal
from protocol.attempt import Attempt
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
        self.actor = audit.candidate(user.id)
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
        storage = self.storage
        interview = await storage.get_interview(interview_id)
        outcome = admission.admit_start(
            interview_id=interview_id,
            definition=interview.definition if interview else None,
            candidate_id=self.user_id,
            invited=await storage.is_invited(interview_id, self.user_id),
            active=await self.active(now),
            used=await storage.count_attempts(interview_id, self.user_id),
            session_id=new_session_id(),
            now=now,
            archived_at=await storage.archived_at(interview_id),
        )
        if isinstance(outcome, Refusal):
            return outcome
        return await self._create(outcome, None, now)

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
        definition, used, invited, archived_at = None, 0, False, None
        if active is not None:
            interview_id = active.interview_id
            storage = self.storage
            interview = await storage.get_interview(interview_id)
            definition = interview.definition if interview else None
            used = await storage.count_attempts(interview_id, self.user_id)
            invited = await storage.is_invited(interview_id, self.user_id)
            archived_at = await storage.archived_at(interview_id)
        new = admission.admit_restart(
            active=active,
            definition=definition,
            used=used,
            session_id=new_session_id(),
            now=now,
            invited=invited,
            archived_at=archived_at,
        )
        if isinstance(new, Refusal):
            return new
        assert active is not None  # admit_restart refuses without one
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
        created = await self._create(new, active, now)
        if not held:
            await lock.release(active.session_id, self.holder)
        return created

    async def _create(
        self, attempt: Attempt, old: Attempt | None, now: Millis
    ) -> Attempt | Refusal:
        started = audit.started(attempt, self.actor, now)
        try:
            await self.storage.create_attempt(
                attempt, candidate_name=self.user.name, audit=[started], abandon=old
            )
        except (AlreadyInProgress, Conflict):
            return admission.IN_PROGRESS
        if old is not None:
            abandoned = audit.abandoned(attempt, self.actor, now)
            await self.storage.append_audit(
                old.session_id, [abandoned], interview_id=old.interview_id
            )
            await self.services.bus.publish(old.session_id, self.holder)
        return attempt


def new_session_id() -> SessionId:
    return SessionId(uuid.uuid4().hex)
