"""The port graders call to reach a language model.

Graders depend on :class:`Completer` only; :mod:`evaluators.litellm_adapter` is the one
implementation that talks to providers, and tests pass a fake that records requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One request for a JSON judgement.

    Attributes:
        model: the litellm model string to ask first (fallbacks are the completer's).
        system: the system message: the instructions, trusted.
        user: the user message: the task, with candidate text only between delimiters.
        schema: the pydantic model the answer must match (sent as a strict schema).
    """

    model: str
    system: str
    user: str
    schema: type[BaseModel]


@dataclass(frozen=True, slots=True)
class Completion:
    """What the model answered.

    Attributes:
        text: the raw message content, not yet validated.
        model: the model that answered (a fallback when the first one failed).
    """

    text: str
    model: str


class Completer(Protocol):
    """Sends one request to a model and returns its raw answer."""

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask ``request.model`` (then the fallbacks) for a judgement.

        Raises:
            ModelUnavailable: no model answered within the timeouts and retries.
        """
        ...
