"""protocol/ stays pure: no clock, no randomness, no I/O (STYLE.md section 1)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).parents[2] / "protocol"
FORBIDDEN = frozenset(
    {
        "asyncio",
        "time",
        "os",
        "random",
        "databases",
        "taskiq",
        "litellm",
        "starlette",
        "uvicorn",
        "websockets",
        "socket",
        "server",
        "evaluators",
    }
)


def imported_modules(source: str) -> Iterator[str]:
    """The absolute module names ``source`` imports."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def forbidden_imports(source: str) -> list[str]:
    return [
        name for name in imported_modules(source) if name.split(".")[0] in FORBIDDEN
    ]


def protocol_modules() -> list[Path]:
    return sorted(PROTOCOL.rglob("*.py"))


def test_the_protocol_package_is_found() -> None:
    names = {path.name for path in protocol_modules()}

    assert {"__init__.py", "attempt.py", "messages.py"} <= names


@pytest.mark.parametrize(
    "path", protocol_modules(), ids=lambda path: str(path.relative_to(PROTOCOL))
)
def test_protocol_module_imports_no_clock_randomness_or_io(path: Path) -> None:
    assert forbidden_imports(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os.path",
        "from time import monotonic",
        "import random as chance",
        "from server.storage.attempts import Storage",
        "import json, socket",
        "def f():\n    import websockets",
        "if True:\n    from starlette import websockets",
        "from evaluators import grade",
    ],
)
def test_the_check_catches_every_kind_of_forbidden_import(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import json",
        "from protocol.attempt import Attempt",
        "from . import attempt",
        "import typing",
        "from collections.abc import Mapping",
        "import servers",
    ],
)
def test_the_check_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(source) == []
