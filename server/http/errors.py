"""Every failure of a route becomes one JSON answer, here and nowhere else.

The body is always ``{"error": code, "message": ...}`` (and, for some codes, details
such as ``problems``); no traceback ever reaches a client. :data:`exception_handlers`
goes to ``Starlette(exception_handlers=...)`` and :data:`middleware` to
``Starlette(middleware=...)``:

* :class:`ApiError`: what the route decided (status, code, message);
* Starlette's :class:`~starlette.exceptions.HTTPException` (no such route, a method
  the route does not take): its status, ``not_found`` or ``method_not_allowed``;
* :class:`~server.auth.AuthError`: 401 ``unauthenticated`` with its reason;
* :class:`~server.errors.NotFound`: 404 ``not_found`` with its message;
* :class:`~server.errors.QuotaExceeded`: 409 ``quota_exceeded`` with its message and
  ``limit``;
* :class:`~server.errors.Unavailable`: 503 ``unavailable``, logged as a warning;
* anything else: 500 ``internal``, logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from server.auth import AuthError
from server.errors import NotFound, QuotaExceeded, ServerError, Unavailable

logger = logging.getLogger(__name__)

__all__ = ["ApiError", "exception_handlers", "middleware"]


class ApiError(ServerError):
    """An error answer: HTTP status, a stable ``error`` code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


def answer(request: Request, exc: Exception) -> ApiError:
    """The error answer to ``exc``, raised by the route serving ``request``."""
    match exc:
        case ApiError():
            return exc
        case HTTPException(status_code=status, detail=detail, headers=headers):
            code = _ROUTING_CODES.get(status, "bad_request")
            return ApiError(status, code, str(detail).lower(), headers=headers)
        case AuthError(reason=reason):
            return ApiError(401, "unauthenticated", reason)
        case NotFound():
            return ApiError(404, "not_found", str(exc))
        case QuotaExceeded(limit=limit):
            return ApiError(409, "quota_exceeded", str(exc), limit=limit)
        case Unavailable():
            logger.warning("storage unavailable for %s %s", request.method, request.url)
            message = "the database is unavailable, retry later"
            return ApiError(503, "unavailable", message)
        case _:
            logger.error(
                "unexpected failure in %s %s", request.method, request.url, exc_info=exc
            )
            return ApiError(500, "internal", "internal server error")


async def error_response(request: Request, exc: Exception) -> Response:
    if request.scope["type"] != "http":
        # A socket's failure (Starlette asks the same handlers): not an HTTP answer.
        raise exc
    return answer(request, exc).response()


exception_handlers: dict[Any, ExceptionHandler] = {
    ApiError: error_response,
    HTTPException: error_response,
    AuthError: error_response,
    NotFound: error_response,
    QuotaExceeded: error_response,
    Unavailable: error_response,
}
"""For ``Starlette(exception_handlers=...)``: the errors a route may raise."""

middleware = [
    # The catch-all (500 "internal") is not in exception_handlers: Starlette gives an
    # Exception handler to its ServerErrorMiddleware, which answers and then raises the
    # exception again, to the server (which logs it twice and drops the connection)
    # or to a test client (which raises it). An ExceptionMiddleware of our own, inside
    # that one and outside Starlette's, answers whatever else a route raised, once.
    Middleware(ExceptionMiddleware, handlers={Exception: error_response}),
]
"""For ``Starlette(middleware=...)``: the answer to any other failure."""
