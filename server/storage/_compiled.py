"""A compiled-statement cache for ``databases``.

``databases`` 0.9 compiles every SQLAlchemy statement on every execution, which
SQLAlchemy's own engine never does: it looks the statement's structure up by its
cache key and only binds this execution's values. Measured here, compiling was half
of the storage layer's CPU time (about 18 statements per candidate attach). This
wraps each backend's ``_compile`` to do what the engine does: compile a statement
shape once per dialect, then rebuild the parameters from the cache key's bind values
(``construct_params(extracted_parameters=...)``).

Statements whose SQL text depends on their values are never cached: DDL, expanding
``IN`` lists and literal-rendered parameters (``render_postcompile``), and anything
SQLAlchemy declares uncacheable. ``databases`` is pinned to 0.9.0 because this
reaches its private ``_compile``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from databases.backends.postgres import PostgresConnection
from databases.backends.sqlite import SQLiteConnection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement

Compile = Callable[[Any, Any], Any]
_caches: weakref.WeakKeyDictionary[Dialect, dict[object, SQLCompiler]] = (
    weakref.WeakKeyDictionary()
)
_COMPILE_OPTIONS = {"render_postcompile": True}


class _Rebound:
    """A cached compiled statement, with this execution's parameter values."""

    def __init__(self, compiled: SQLCompiler, params: Mapping[str, Any]) -> None:
        self._compiled = compiled
        self._params = params

    @property
    def params(self) -> Mapping[str, Any]:
        return self._params

    def construct_params(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        return self._params

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


class _Precompiled:
    """Stands in for the statement: its ``compile`` returns the rebound form."""

    def __init__(self, compiled: _Rebound) -> None:
        self._compiled = compiled

    def compile(self, **kwargs: Any) -> _Rebound:
        return self._compiled


def _cacheable(compiled: SQLCompiler) -> bool:
    return not (compiled.post_compile_params or compiled.literal_execute_params)


def _cached(original: Compile) -> Compile:
    def _compile(connection: Any, query: Any) -> Any:
        if isinstance(query, DDLElement) or not isinstance(query, ClauseElement):
            return original(connection, query)
        key = query._generate_cache_key()
        if key is None or any(bind.expanding for bind in key.bindparams):
            return original(connection, query)
        dialect: Dialect = connection._dialect
        cache = _caches.setdefault(dialect, {})
        compiled = cache.get(key.key)
        if compiled is None:
            compiled = dialect.statement_compiler(
                dialect, query, cache_key=key, compile_kwargs=_COMPILE_OPTIONS
            )
            if not _cacheable(compiled):
                return original(connection, query)
            cache[key.key] = compiled
        params = compiled.construct_params(extracted_parameters=key.bindparams)
        return original(connection, _Precompiled(_Rebound(compiled, params)))

    _compile.__wrapped__ = original  # type: ignore[attr-defined]
    return _compile


def install() -> None:
    """Cache compilation in both backends; calling it again changes nothing."""
    backends: tuple[Any, ...] = (SQLiteConnection, PostgresConnection)
    for backend in backends:
        if not hasattr(backend._compile, "__wrapped__"):
            backend._compile = _cached(backend._compile)
