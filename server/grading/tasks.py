"""The taskiq tasks of grading.

The tasks get their :class:`GradingService` (and a worker's :class:`Capacity`) from
the broker's state (``TaskiqDepends``), set by ``serve``'s lifespan or by the worker's
startup hook. Messages name their task (``grade_answers``, ``summarise``) and carry
plain arguments: workers of another version understand them as long as the names and
arguments stay.
"""

from __future__ import annotations

from taskiq import TaskiqDepends, TaskiqState

from protocol.ids import SessionId
from server.grading.capacity import Capacity
from server.grading.service import GradingService

TASK_TIMEOUT_S = 300
"""The longest one task may run (model timeouts, retries, fallbacks, the sandbox)."""

_STATE: TaskiqState = TaskiqDepends()


def _grading(state: TaskiqState = _STATE) -> GradingService:
    service: GradingService = state.grading
    return service


_GRADING = TaskiqDepends(_grading)


def _capacity(state: TaskiqState = _STATE) -> Capacity:
    capacity: Capacity | None = getattr(state, "capacity", None)
    return capacity or Capacity(0)


_CAPACITY = TaskiqDepends(_capacity)


async def grade_answers(
    jobs: list[tuple[str, int]],
    grading: GradingService = _GRADING,
    capacity: Capacity = _CAPACITY,
) -> None:
    with capacity.holding(len(jobs)):
        keys = [(SessionId(session), index) for session, index in jobs]
        await grading.grade_answers(keys)


async def summarise(
    session_id: str,
    grading: GradingService = _GRADING,
    capacity: Capacity = _CAPACITY,
) -> None:
    with capacity.holding(1):
        await grading.summarise(SessionId(session_id))
