"""The HTTP API (PRODUCT.md section 3), one module per resource.

``create_app`` mounts :func:`routes` and installs :data:`exception_handlers` and
:data:`middleware`, which turn every failure into a JSON error
(:mod:`server.http.errors`). Handlers read the
app's :class:`~server.services.Services` through :func:`server.http.access.services`.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from server.http.errors import ApiError, exception_handlers, middleware
from server.http.interviews import interview_routes
from server.http.operations import operation_routes
from server.http.results import results_routes
from server.http.webhooks import webhook_routes

__all__ = ["ApiError", "exception_handlers", "middleware", "routes"]


def routes() -> list[BaseRoute]:
    return [
        *interview_routes(),
        *operation_routes(),
        *results_routes(),
        *webhook_routes(),
    ]
