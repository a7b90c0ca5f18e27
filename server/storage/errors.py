"""The storage errors (moved out of :mod:`server.storage.attempts` unchanged, so that
the database handle, which translates the drivers' errors, can raise them).

Exceptions::

    StorageError
    ├── Conflict             a conditional write found the attempt changed
    ├── AlreadyInProgress    the candidate already has an attempt in progress
    └── StorageUnavailable   the database is unreachable
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of the storage errors."""


class Conflict(StorageError):
    """A conditional write found the attempt changed: reload and decide again."""


class AlreadyInProgress(StorageError):
    """The candidate already has an attempt in progress (at any interview)."""


class StorageUnavailable(StorageError):
    """The database cannot be reached."""
