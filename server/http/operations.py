"""Operations (PRODUCT.md section 3): liveness, readiness, the protocol's schema and
the Prometheus metrics."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol.messages import frame_schemas
from server.http.access import reply, services
from server.http.bodies import Health, Readiness
from server.http.openapi import Access, Operation, Reply
from server.storage.attempts import Storage

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 5.0


TAG = "operations"
JSON_OBJECT = {"type": "object"}


async def healthz(request: Request) -> Response:
    return reply(Health())


async def readyz(request: Request) -> Response:
    shared = services(request)
    checks = {"database": await _check(_database_ready(shared.storage), "database")}
    for name, check in shared.readiness.items():
        checks[name] = await _check(check(), name)
    ready = all(checks.values())
    body = Readiness(
        status="ok" if ready else "unavailable",
        checks={name: "ok" if ok else "failed" for name, ok in checks.items()},
    )
    return reply(body, 200 if ready else 503)


async def _database_ready(storage: Storage) -> bool:
    await storage.ping()
    return True


async def _check(probe: Awaitable[bool], name: str) -> bool:
    try:
        return await asyncio.wait_for(probe, READY_TIMEOUT_S)
    except Exception as exc:
        # Readiness must answer, whatever the dependency does.
        logger.warning("readiness check %s failed: %r", name, exc)
        return False


@functools.cache
def _schema() -> dict[str, object]:
    return frame_schemas()


async def protocol_schema(request: Request) -> Response:
    return JSONResponse(_schema())


async def metrics(request: Request) -> Response:
    body = generate_latest(services(request).metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def operation_operations() -> list[Operation]:
    return [
        Operation(
            "GET",
            "/healthz",
            healthz,
            "The process is up",
            Access.PUBLIC,
            (Reply(200, "Up", Health),),
            TAG,
        ),
        Operation(
            "GET",
            "/readyz",
            readyz,
            "The database and the broker (and Redis) answer",
            Access.PUBLIC,
            (
                Reply(200, "Ready", Readiness),
                Reply(503, "A check failed: it is named", Readiness),
            ),
            TAG,
        ),
        Operation(
            "GET",
            "/protocol.schema.json",
            protocol_schema,
            "JSON Schema of every WebSocket frame",
            Access.PUBLIC,
            (Reply(200, "JSON Schema 2020-12", schema=JSON_OBJECT),),
            TAG,
        ),
        Operation(
            "GET",
            "/metrics",
            metrics,
            "Prometheus metrics",
            Access.PUBLIC,
            (
                Reply(
                    200,
                    "The text exposition format",
                    media_type="text/plain",
                    schema={"type": "string"},
                ),
            ),
            TAG,
        ),
    ]
