"""The layers: protocol/ stays pure (no clock, no randomness, no I/O), the parts of
the shell import each other only downwards, and nothing imports in a circle
(STYLE.md section 1; docs/design.md, "Parts").

Imports are read from the source with ``ast``, so a function-level or
``TYPE_CHECKING`` import counts like any other: a cycle "for types only" is still a
cycle a reader must hold.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
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


# -- the parts of the shell, and cycles ------------------------------------------------

ROOT = PROTOCOL.parent
PACKAGES = ("protocol", "evaluators", "server", "bench")

FOUNDATION = "foundation"
PART_OF_MODULE: Mapping[str, str] = {
    "server": FOUNDATION,
    "server.errors": FOUNDATION,
    "server.settings": FOUNDATION,
    "server.auth": FOUNDATION,
    "server.metrics": FOUNDATION,
    "server.batching": FOUNDATION,
    "server._gc": FOUNDATION,
    "server.descriptors": FOUNDATION,
    "server.outbox": FOUNDATION,
    "server.services": "services",
    "server.app": "entry",
    "server.__main__": "entry",
}
SUBPACKAGES = (
    "storage",
    "cluster",
    "grading",
    "candidate",
    "monitor",
    "http",
    "webhooks",
)

BELOW: Mapping[str, frozenset[str]] = {
    FOUNDATION: frozenset(),
    "storage": frozenset({FOUNDATION}),
    "cluster": frozenset({FOUNDATION}),
    "services": frozenset({FOUNDATION, "storage", "cluster"}),
    "grading": frozenset({FOUNDATION, "storage", "cluster", "services"}),
    "candidate": frozenset({FOUNDATION, "storage", "cluster", "services"}),
    "monitor": frozenset({FOUNDATION, "storage", "cluster", "services"}),
    "webhooks": frozenset({FOUNDATION, "storage"}),
    "http": frozenset({FOUNDATION, "storage", "services", "webhooks"}),
    "entry": frozenset(
        {
            *(FOUNDATION, "storage", "cluster", "services", "grading", "candidate"),
            *("monitor", "http", "webhooks"),
        }
    ),
}
"""Which parts of ``server/`` each part may import, besides itself."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = project_modules()


def imports_of(name: str, path: Path) -> Iterator[str]:
    """The project modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield from _known(submodule if submodule in MODULES else base)


def _known(name: str) -> Iterator[str]:
    # `import a.b.c` names a.b.c; anything outside the project is not ours to check.
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    if name:
        yield name


GRAPH = {name: frozenset(imports_of(name, path)) for name, path in MODULES.items()}


def part(name: str) -> str | None:
    if not name.startswith("server"):
        return None
    if name in PART_OF_MODULE:
        return PART_OF_MODULE[name]
    subpackage = name.split(".")[1]
    assert subpackage in SUBPACKAGES, f"{name} belongs to no part: add it to the map"
    return subpackage


def test_every_module_of_the_shell_belongs_to_a_known_part() -> None:
    shell = [name for name in MODULES if name.startswith("server")]

    assert {part(name) for name in shell} == set(BELOW)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("server")))
def test_a_part_of_the_shell_imports_only_the_parts_below_it(name: str) -> None:
    own = part(name)
    assert own is not None
    allowed = BELOW[own] | {own}

    wrong = {
        target: part(target)
        for target in GRAPH[name]
        if part(target) is not None and part(target) not in allowed
    }

    assert wrong == {}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("protocol", {"protocol"}), ("evaluators", {"protocol", "evaluators"})],
)
def test_the_core_and_the_graders_import_nothing_of_the_shell(
    package: str, allowed: set[str]
) -> None:
    outside = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.split(".")[0] == package
        for target in targets
        if target.split(".")[0] not in allowed
    }

    assert outside == set()


def cycles(graph: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), or self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, frozenset()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, frozenset()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_only_the_webhook_sender_imports_an_http_client() -> None:
    # One module speaks HTTP to the outside, so one module holds the SSRF rules'
    # enforcement (the address check, no redirects, no proxies from the
    # environment), as only evaluators/litellm_adapter.py imports litellm.
    clients = {"httpx", "httpcore", "aiohttp", "requests", "urllib3", "urllib.request"}
    importers = {
        name
        for name, path in MODULES.items()
        if name.startswith("server")
        and clients & set(imported_modules(path.read_text()))
    }

    assert importers == {"server.webhooks.sender"}


def test_no_modules_import_each_other() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle_through_three_modules() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
    }

    assert cycles(graph) == [["a", "b", "c"]]


def test_the_import_reader_resolves_relative_and_submodule_imports(
    tmp_path: Path,
) -> None:
    source = tmp_path / "connection.py"
    source.write_text(
        "from . import lobby\n"
        "from ..storage import attempts\n"
        "from server.cluster.lock import Acquired\n"
        "import server.settings\n"
        "import json\n"
        "if TYPE_CHECKING:\n    from server.http import routes\n"
    )
    found = set(imports_of("server.candidate.connection", source))

    assert found == {
        "server.candidate.lobby",
        "server.storage.attempts",
        "server.cluster.lock",
        "server.settings",
        "server.http",
    }
