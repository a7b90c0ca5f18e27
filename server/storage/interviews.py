"""The interviews every store reads, each read from the database once.

An interview never changes once created, so its record and question views are kept
for the life of the database handle (``Database.interviews``, in
:mod:`server.storage.database`), which the attempt store and the results store share.
"""

from __future__ import annotations

import databases
from databases.interfaces import Record

from protocol.attempt import QuestionView
from protocol.ids import InterviewId
from server.storage.records import InterviewRecord
from server.storage.tables import interview_from, interviews

Views = tuple[QuestionView, ...]
Cached = tuple[InterviewRecord, Views]


class Interviews:
    def __init__(self, database: databases.Database) -> None:
        self._database = database
        self._cached: dict[InterviewId, Cached] = {}

    async def get(self, interview_id: InterviewId) -> Cached | None:
        cached = self._cached.get(interview_id)
        if cached is None:
            query = interviews.select().where(interviews.c.id == interview_id)
            row = await self._database.fetch_one(query)
            cached = None if row is None else self.remember(interview_from(row))
        return cached

    def remember(self, record: InterviewRecord) -> Cached:
        # Interviews are immutable once created: their views are computed once.
        cached = self._cached[record.id] = (record, record.questions)
        return cached

    def known(self, row: Record) -> InterviewRecord:
        """The record of an interview row just read (cached if it was before)."""
        cached = self._cached.get(row["id"])
        return (cached or self.remember(interview_from(row)))[0]
