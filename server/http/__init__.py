"""The HTTP API (PRODUCT.md section 3), one module per resource.

Each resource module lists its operations (:class:`server.http.openapi.Operation`):
the route, who may call it and the models of what it parses and answers.
:func:`routes` mounts them all, with ``GET /openapi.json``, the OpenAPI 3.1 document
made from the same table. ``create_app`` installs :data:`exception_handlers` and
:data:`middleware`, which turn every failure into a JSON error
(:mod:`server.http.errors`). Handlers read the app's
:class:`~server.services.Services` through :func:`server.http.access.services`.
"""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from server.http.errors import ApiError, exception_handlers, middleware
from server.http.interviews import interview_operations
from server.http.invitations import invitation_operations
from server.http.openapi import Access, Operation, Reply, Schema, document
from server.http.operations import JSON_OBJECT, operation_operations
from server.http.results import results_operations
from server.http.statistics import statistics_operations
from server.http.webhooks import webhook_operations

__all__ = [
    "ApiError",
    "exception_handlers",
    "middleware",
    "openapi",
    "operations",
    "routes",
]

TITLE = "interview-server"
VERSION = "1"
DESCRIPTION = (
    "The recruiter and candidate HTTP API. JSON everywhere; "
    "`Authorization: Bearer <JWT>`. Recruiter endpoints see only their `org`: "
    "anything outside it is 404. Errors are `{error, message}` (422 adds "
    "`problems`, each with the dotted `path` of a wrong field). The candidate "
    "socket is `GET /ws/candidate` and the recruiters' `GET /ws/monitor`; their "
    "frames are in `/protocol.schema.json`."
)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi())


def operations() -> list[Operation]:
    """Every HTTP operation the server serves, this document's own included."""
    served = Operation(
        "GET",
        "/openapi.json",
        openapi_json,
        "This document",
        Access.PUBLIC,
        (Reply(200, "OpenAPI 3.1", schema=JSON_OBJECT),),
        "operations",
    )
    return [
        *interview_operations(),
        *invitation_operations(),
        *results_operations(),
        *statistics_operations(),
        *webhook_operations(),
        *operation_operations(),
        served,
    ]


@functools.cache
def openapi() -> Schema:
    """The OpenAPI 3.1 document of :func:`operations` (made once)."""
    return document(operations(), title=TITLE, version=VERSION, description=DESCRIPTION)


def routes() -> list[BaseRoute]:
    return [operation.route() for operation in operations()]
