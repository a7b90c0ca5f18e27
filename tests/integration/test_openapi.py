"""The OpenAPI document (server/http/openapi.py): served, valid OpenAPI 3.1, and
describing every HTTP route the app serves with its security and its errors.

tests/e2e/test_schemathesis.py fuzzes a running server against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.datastructures import Secret
from starlette.routing import Route

from server.app import create_app
from server.http import openapi, operations
from server.settings import Settings

pytestmark = pytest.mark.integration

SETTINGS = Settings(jwt_secret=Secret("openapi-test-secret-long-enough-for-hs256"))


@pytest.fixture
async def served() -> AsyncIterator[dict[str, Any]]:
    app = create_app(SETTINGS)  # not started: serving the document needs no storage
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    yield body


def http_routes() -> set[tuple[str, str]]:
    app = create_app(SETTINGS)
    return {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds HEAD to every GET
    }


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
    }


async def test_the_served_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    validate(served)  # openapi-spec-validator: raises on any violation

    assert served["openapi"] == "3.1.0"
    assert served == openapi()


async def test_every_http_route_of_the_app_is_documented_and_nothing_else(
    served: dict[str, Any],
) -> None:
    assert documented(served) == http_routes()
    assert len(http_routes()) == len(operations())


def test_every_operation_names_its_security_and_its_error_answers() -> None:
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            responses = operation["responses"]
            if not operation["security"]:
                continue  # the operations' own: /readyz answers 503 with its checks
            assert operation["security"] == [{"bearer": []}], name
            assert {"401", "403", "503"} <= set(responses), name
            if "{" in path:
                assert "404" in responses, name
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), name
            if any(p["in"] == "query" for p in operation.get("parameters", ())):
                assert "422" in responses, name
            errors = [code for code in responses if code >= "400"]
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, name


def test_the_public_operations_are_the_operations_ones() -> None:
    public = {
        path
        for path, item in openapi()["paths"].items()
        for operation in item.values()
        if operation["security"] == []
    }

    assert public == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/protocol.schema.json",
        "/openapi.json",
    }


def test_list_queries_are_documented_with_their_bounds_and_values() -> None:
    operation = openapi()["paths"]["/api/interviews/{interview_id}/sessions"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}

    assert set(parameters) == {
        *("interview_id", "status", "evaluation", "recommendation", "candidate"),
        *("sort", "order", "limit", "cursor"),
    }
    limit = parameters["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200)
    assert parameters["status"]["explode"] is True
    schemas = openapi()["components"]["schemas"]
    assert schemas["SessionSort"]["enum"] == ["started_at", "score", "candidate_name"]
    assert "null" not in str(parameters["cursor"]["schema"])


def test_the_definition_body_is_the_interview_definition_schema() -> None:
    operation = openapi()["paths"]["/api/interviews"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    definition = openapi()["components"]["schemas"]["InterviewDefinition"]

    assert body == {"$ref": "#/components/schemas/InterviewDefinition"}
    assert set(definition["required"]) >= {"title", "questions"}
