"""The one module that talks to litellm: a :class:`Completer` over a litellm Router.

litellm is imported on the first request, not with the server: the import costs about
3 s and 100 MB (STACK-NOTES.md), and the embedded default never needs it.

Every configured model (the three tasks' and the fallbacks) becomes one Router
deployment with the configured ``api_base`` and key. The Router retries each model
``retries`` times (429, 5xx, timeouts; with back-off) and then tries the fallbacks in
order. The OpenAI SDK underneath would retry twice more on its own, so its
``max_retries`` is 0: the retry count is exactly the configured one. Cooldowns are off:
a model that failed one grade is asked again for the next.

All litellm and OpenAI errors are translated here, and only here (STYLE.md section 8).
"""

from __future__ import annotations

import os
from typing import Any

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


class LitellmCompleter:
    """A :class:`evaluators.completer.Completer` backed by a litellm Router.

    Args:
        config: the models, ``api_base``, key, timeout, retries and fallbacks.
    """

    def __init__(self, config: GraderConfig) -> None:
        self._config = config
        self._router: Any = None

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask ``request.model``, then the fallbacks, for a JSON judgement.

        Raises:
            ModelUnavailable: every model failed after its retries (retryable).
            EvaluationError: a permanent refusal (bad key, unknown model), not
                retryable.
            UnparsableOutput: the answer had no text content.
        """
        router = self._get_router()
        try:
            response = await router.acompletion(
                model=request.model,
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user},
                ],
                response_format=request.schema,
            )
        except Exception as exc:
            raise _translate(exc, request.model) from exc
        return _completion(response, request.model)

    async def aclose(self) -> None:
        """Close the HTTP clients litellm keeps between calls (idempotent)."""
        if self._router is None:
            return
        from litellm.llms.custom_httpx.async_client_cleanup import (
            close_litellm_async_clients,
        )

        await close_litellm_async_clients()

    def _get_router(self) -> Any:
        if self._router is None:
            self._router = _build_router(self._config)
        return self._router


def _build_router(config: GraderConfig) -> Any:
    # The one place allowed to touch the environment (STACK-NOTES.md): litellm reads
    # these at import. Without them the import blocks fetching a price list and token
    # counting reaches Hugging Face; with them nothing leaves loopback on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import litellm
    from litellm.router import Router

    litellm.suppress_debug_info = True
    deployments = [
        {"model_name": model, "litellm_params": _parameters(config, model)}
        for model in config.models
    ]
    primaries = [m for m in config.models if m not in config.fallbacks]
    fallbacks = [{m: list(config.fallbacks)} for m in primaries if config.fallbacks]
    return Router(
        model_list=deployments,
        num_retries=config.retries,
        timeout=config.timeout_s,
        fallbacks=fallbacks,
        disable_cooldowns=True,
    )


def _parameters(config: GraderConfig, model: str) -> dict[str, object]:
    parameters: dict[str, object] = {
        "model": model,
        "timeout": config.timeout_s,
        "max_retries": 0,  # the SDK's own retries; the Router counts ours
    }
    if config.api_base:
        parameters["api_base"] = config.api_base
    if config.api_key:
        parameters["api_key"] = config.api_key
    return parameters


def _completion(response: Any, asked: str) -> Completion:
    hidden = getattr(response, "_hidden_params", None) or {}
    model = str(hidden.get("litellm_model_name") or asked)
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
