"""Storage: one database handle and the stores that share it.

``Database`` is the handle (pool, transactions, the SQLite write lock, error
translation); ``DatabaseStorage`` stores interviews and attempts (the ``Storage``
port) and ``ResultsStore`` grades, summaries and corrections, both on one handle::

    database = Database(url)
    storage, results = DatabaseStorage(database), ResultsStore(database)
"""

from __future__ import annotations

from server.storage.attempts import DatabaseStorage, Storage
from server.storage.database import Database
from server.storage.migrations import migrate
from server.storage.records import InterviewRecord, Invitee
from server.storage.results import ResultsStore, UnknownAnswer

__all__ = [
    "Database",
    "DatabaseStorage",
    "InterviewRecord",
    "Invitee",
    "ResultsStore",
    "Storage",
    "UnknownAnswer",
    "migrate",
]
