"""The single-connection lock of an attempt (PROTOCOL.md 1, "Single connection").

One live connection holds an attempt. A takeover moves the lock and tells the old
holder, which sends ``superseded`` and closes with 4409. The lock is advisory; the
database fence (``sessions.owner_epoch``) is what refuses a superseded writer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from protocol.ids import SessionId

Superseded = Callable[[], None]
"""Called (without awaiting) on the old holder when a takeover moves the lock."""


class Acquired(enum.Enum):
    """How :meth:`SessionLock.acquire` went."""

    LOCKED = "locked"  # another holder has it; nothing changed
    ACQUIRED = "acquired"  # it was free (or already ours)
    TAKEN_OVER = "taken_over"  # another holder had it and was told


class SessionLock(Protocol):
    async def acquire(
        self,
        session_id: SessionId,
        holder: str,
        *,
        takeover: bool,
        on_superseded: Superseded,
    ) -> Acquired:
        """Take the lock, or take it over from another holder when ``takeover``."""
        ...

    async def release(self, session_id: SessionId, holder: str) -> None:
        """Give the lock up if ``holder`` still has it."""
        ...

    async def holds(self, session_id: SessionId, holder: str) -> bool: ...


@dataclass(slots=True)
class _Hold:
    holder: str
    on_superseded: Superseded


class InProcessLock:
    """The embedded default: every connection lives in this process."""

    def __init__(self) -> None:
        self._holds: dict[SessionId, _Hold] = {}

    async def acquire(
        self,
        session_id: SessionId,
        holder: str,
        *,
        takeover: bool,
        on_superseded: Superseded,
    ) -> Acquired:
        current = self._holds.get(session_id)
        outcome = Acquired.ACQUIRED
        if current is not None and current.holder != holder:
            if not takeover:
                return Acquired.LOCKED
            current.on_superseded()
            outcome = Acquired.TAKEN_OVER
        self._holds[session_id] = _Hold(holder, on_superseded)
        return outcome

    async def release(self, session_id: SessionId, holder: str) -> None:
        current = self._holds.get(session_id)
        if current is not None and current.holder == holder:
            del self._holds[session_id]

    async def holds(self, session_id: SessionId, holder: str) -> bool:
        current = self._holds.get(session_id)
        return current is not None and current.holder == holder
