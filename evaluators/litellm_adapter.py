"""The one module that talks to litellm: a :class:`Completer` over its ``acompletion``.

litellm is imported on the first request (or by ``evaluators.preload``), not with
the server: the import costs about 3 s and 100 MB (STACK-NOTES.md), and the
embedded default never needs it.

Each request goes to the task's model with the configured ``api_base``, key and
timeout; a model that fails retryably (429, 5xx, a timeout, a refused connection) is
asked again ``retries`` times with exponential back-off, then the fallbacks are tried
in order, each with the same retries. The OpenAI SDK underneath would retry twice more
on its own, so its ``max_retries`` is 0: the retry count is exactly the configured one.

The retries and fallbacks are ours rather than a litellm ``Router``'s: the Router cost
about 6 ms of CPU per request on top of litellm's own ~4.5 ms (deep copies for usage
tracking, callbacks, cooldown bookkeeping), which capped a worker near 90 grades/s.

All litellm and OpenAI errors are translated here, and only here (STYLE.md section 8).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from pydantic import BaseModel

from evaluators.completer import Completion, CompletionRequest
from evaluators.config import GraderConfig
from evaluators.errors import EvaluationError, ModelUnavailable, UnparsableOutput

# Status errors that no retry will fix: a wrong model name, key or request.
_PERMANENT = (
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
)
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0


def backoff_s(retry: int, draw: float) -> float:
    """Seconds before retry number ``retry`` (0, 1, ...): exponential, capped, and
    drawn from the upper half of that ceiling (``draw`` in [0, 1)) so that workers
    do not retry in step."""
    ceiling: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**retry)
    return ceiling * (0.5 + draw / 2)


class LitellmCompleter:
    """A :class:`evaluators.completer.Completer` backed by ``litellm.acompletion``.

    Args:
        config: the models, ``api_base``, key, timeout, retries and fallbacks.
    """

    def __init__(self, config: GraderConfig) -> None:
        self._config = config
        self._litellm: Any = None
        self._formats: dict[type[BaseModel], dict[str, Any]] = {}

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask ``request.model``, then the fallbacks, for a JSON judgement.

        Raises:
            ModelUnavailable: every model failed after its retries (retryable).
            EvaluationError: a permanent refusal (bad key, unknown model), not
                retryable.
            UnparsableOutput: the answer had no text content.
        """
        litellm = self._module()
        messages = [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ]
        unavailable: EvaluationError | None = None  # retryable: try again later
        refused: EvaluationError | None = None
        for model in self._models(request.model):
            for retry in range(self._config.retries + 1):
                if retry:
                    await asyncio.sleep(backoff_s(retry - 1, random.random()))
                try:
                    response = await litellm.acompletion(
                        messages=messages,
                        response_format=self._response_format(request.schema),
                        **_parameters(self._config, model),
                    )
                except Exception as exc:
                    failure = _translate(exc, model)
                    if failure.retryable:
                        unavailable = failure
                        continue
                    if model == request.model:
                        raise failure from exc  # the task's own model refuses
                    refused = failure  # a fallback refusing: try the next one
                    break
                return _completion(response, model)
        # A fallback's refusal does not make the task's model's outage permanent.
        last = unavailable or refused
        assert last is not None, "at least one model is always asked"
        raise last

    async def aclose(self) -> None:
        """Close the HTTP clients litellm keeps between calls (idempotent)."""
        if self._litellm is None:
            return
        from litellm.llms.custom_httpx.async_client_cleanup import (
            close_litellm_async_clients,
        )

        await close_litellm_async_clients()

    def _response_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        """The strict JSON schema litellm would derive from ``schema`` on every call
        (a fifth of its CPU per request, measured), derived once."""
        cached = self._formats.get(schema)
        if cached is None:
            from litellm.utils import type_to_response_format_param

            cached = type_to_response_format_param(schema)
            self._formats[schema] = cached
        return cached

    def _models(self, first: str) -> list[str]:
        return [first, *(model for model in self._config.fallbacks if model != first)]

    def _module(self) -> Any:
        if self._litellm is None:
            self._litellm = import_litellm()
        return self._litellm


def import_litellm() -> Any:
    # The one place allowed to touch the environment (STACK-NOTES.md): litellm reads
    # these at import. Without them the import blocks fetching a price list and token
    # counting reaches Hugging Face; with them nothing leaves loopback on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def _parameters(config: GraderConfig, model: str) -> dict[str, object]:
    parameters: dict[str, object] = {
        "model": model,
        "timeout": config.timeout_s,
        "max_retries": 0,  # the SDK's own retries; complete() counts ours
    }
    if config.api_base:
        parameters["api_base"] = config.api_base
    if config.api_key:
        parameters["api_key"] = config.api_key
    return parameters


def _completion(response: Any, model: str) -> Completion:
    try:
        text = response.choices[0].message.content
    except (AttributeError, IndexError) as exc:
        raise UnparsableOutput(
            "expected a message, got none", model=model, raw=""
        ) from exc
    if not isinstance(text, str) or not text:
        raise UnparsableOutput("expected text content, got none", model=model, raw="")
    return Completion(text=text, model=model)


def _translate(exc: Exception, model: str) -> EvaluationError:
    """Our error for a litellm (or OpenAI SDK) exception; see the module docstring."""
    import litellm
    from openai import OpenAIError  # the base of every litellm API error

    if not isinstance(exc, OpenAIError):
        return ModelUnavailable(
            f"model {model} failed: {type(exc).__name__}", model=model
        )
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if any(isinstance(exc, getattr(litellm.exceptions, n)) for n in _PERMANENT):
        return EvaluationError(
            f"model {model} refused the request: {name} (status {status})",
            retryable=False,
        )
    return ModelUnavailable(
        f"model {model} unavailable after retries: {name} (status {status})",
        model=model,
    )
