"""The interviews every store reads, kept in a bounded cache.

An interview never changes once created, so its record and question views may be
kept and shared by the attempt store and the results store (``Database.interviews``,
in :mod:`server.storage.database`). The cache holds the most recently used ones, at
most ``max_count`` of them and ``max_bytes`` of stored definition JSON in all
(``INTERVIEW_CACHE_MAX``, ``INTERVIEW_CACHE_MAX_BYTES``): an interview pushed out is
read from the database again when next needed, so every instance stays correct
whatever it keeps.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import databases
from databases.interfaces import Record

from protocol.attempt import QuestionView
from protocol.ids import InterviewId
from server.storage.records import InterviewRecord
from server.storage.tables import interview_from, interviews

Views = tuple[QuestionView, ...]
Cached = tuple[InterviewRecord, Views]

DEFAULT_MAX_COUNT = 1_000
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def definition_bytes(definition_json: str) -> int:
    """What a definition costs: its stored JSON, in bytes (UTF-8)."""
    return len(definition_json.encode())


@dataclass(frozen=True, slots=True)
class _Entry:
    cached: Cached
    size: int


class Interviews:
    def __init__(
        self,
        database: databases.Database,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._database = database
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._entries: OrderedDict[InterviewId, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, interview_id: object) -> bool:
        return interview_id in self._entries

    @property
    def bytes(self) -> int:
        """The stored JSON size of the definitions held now."""
        return self._bytes

    async def get(self, interview_id: InterviewId) -> Cached | None:
        entry = self._entries.get(interview_id)
        if entry is not None:
            self._entries.move_to_end(interview_id)
            return entry.cached
        query = interviews.select().where(interviews.c.id == interview_id)
        row = await self._database.fetch_one(query)
        if row is None:
            return None
        return self.remember(interview_from(row), definition_bytes(row["definition"]))

    def remember(self, record: InterviewRecord, size: int) -> Cached:
        """``record`` and its views (computed once), kept as the most recent entry
        unless it alone is larger than the cache."""
        cached = (record, record.questions)
        self._forget(record.id)
        if size <= self.max_bytes:
            self._entries[record.id] = _Entry(cached, size)
            self._bytes += size
            self._evict()
        return cached

    def known(self, row: Record) -> InterviewRecord:
        """The record of an interview row just read: the cached one if it is held,
        else parsed; a listing neither adds nor refreshes entries, so that it does
        not push out the interviews candidates are taking."""
        entry = self._entries.get(row["id"])
        return entry.cached[0] if entry is not None else interview_from(row)

    def _forget(self, interview_id: InterviewId) -> None:
        entry = self._entries.pop(interview_id, None)
        if entry is not None:
            self._bytes -= entry.size

    def _evict(self) -> None:
        while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
            _, entry = self._entries.popitem(last=False)
            self._bytes -= entry.size
