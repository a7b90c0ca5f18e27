"""The litellm adapter's parts that need no litellm (evaluators/litellm_adapter.py).

The call path itself is tested against a stub server in
``tests/integration/test_litellm.py``.
"""

from __future__ import annotations

import math

from evaluators._judgement import clamp
from evaluators.config import GraderConfig
from evaluators.litellm_adapter import (
    BACKOFF_CAP_S,
    LitellmCompleter,
    _parameters,
    backoff_s,
)


def test_each_deployment_gets_the_timeout_and_no_sdk_retries() -> None:
    config = GraderConfig(model_code="openai/m", timeout_s=7)

    assert _parameters(config, "openai/m") == {
        "model": "openai/m",
        "timeout": 7,
        "max_retries": 0,
    }


def test_the_api_base_and_key_are_passed_when_set() -> None:
    config = GraderConfig(api_base="http://127.0.0.1:9/v1", api_key="sk-x")

    parameters = _parameters(config, "openai/m")

    assert parameters["api_base"] == "http://127.0.0.1:9/v1"
    assert parameters["api_key"] == "sk-x"


async def test_closing_an_unused_completer_imports_nothing() -> None:
    completer = LitellmCompleter(GraderConfig(model_code="openai/m"))

    await completer.aclose()

    assert completer._litellm is None


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    assert backoff_s(0, 0.0) == 0.1
    assert 0.19 < backoff_s(0, 0.999) <= 0.2  # the ceiling of the first retry
    assert backoff_s(1, 0.0) == 0.2
    assert 0.39 < backoff_s(1, 0.999) <= 0.4
    assert backoff_s(20, 0.999) <= BACKOFF_CAP_S
    assert backoff_s(20, 0.0) == BACKOFF_CAP_S / 2


def test_clamp_holds_scores_within_bounds() -> None:
    assert clamp(math.nan, 5) == 0
    assert clamp(-1, 5) == 0
    assert clamp(7, 5) == 5
    assert clamp(2.5, 5) == 2.5
