"""Only the adapter talks to litellm (STYLE.md section 3)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_layering import imported_modules

EVALUATORS = Path(__file__).parents[3] / "evaluators"
PROVIDER_PACKAGES = frozenset({"litellm", "openai"})


def test_only_the_adapter_imports_litellm() -> None:
    importers = {
        path.name
        for path in EVALUATORS.glob("*.py")
        if any(
            name.split(".")[0] in PROVIDER_PACKAGES
            for name in imported_modules(path.read_text())
        )
    }

    assert importers == {"litellm_adapter.py"}
