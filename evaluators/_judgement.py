"""Asking the model for a judgement and holding it to its schema (private helper)."""

from __future__ import annotations

import math
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from evaluators.completer import Completer, Completion, CompletionRequest
from evaluators.errors import UnparsableOutput
from evaluators.prompts import Prompt

J = TypeVar("J", bound=BaseModel)


async def ask(
    completer: Completer, model: str, prompt: Prompt, schema: type[J]
) -> tuple[J, Completion]:
    """Send ``prompt`` and validate the answer against ``schema``.

    Raises:
        ModelUnavailable: from the completer.
        UnparsableOutput: the answer is not JSON matching ``schema``.
    """
    request = CompletionRequest(
        model=model, system=prompt.system, user=prompt.user, schema=schema
    )
    completion = await completer.complete(request)
    try:
        judgement = schema.model_validate_json(completion.text)
    except ValidationError as exc:
        raise UnparsableOutput(
            f"expected JSON matching {schema.__name__}, got {exc.error_count()} "
            "validation errors",
            model=completion.model,
            raw=completion.text,
        ) from exc
    return judgement, completion


def clamp(value: float, high: float) -> float:
    """``value`` held within ``0..high``."""
    if math.isnan(value):
        return 0.0
    return min(max(value, 0.0), high)
