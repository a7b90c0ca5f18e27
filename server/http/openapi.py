"""The route table and the OpenAPI 3.1 document made from it.

Each resource module lists its :class:`Operation`\\s: the method and path, the
handler, who may call it, and the pydantic models of its query, body and replies.
:func:`server.http.routes` mounts them; :func:`document` turns the same table into
the document ``GET /openapi.json`` serves, with every model's JSON Schema from
pydantic (JSON Schema 2020-12, which OpenAPI 3.1 uses as is). So a route cannot be
served without being described, nor described differently from what it parses and
answers.

The error replies follow from the operation: 401, 403 and 503 (storage
unavailable) where a token is needed, 404 for ids in the path, 400, 413 and 422 for
a body, 422 for a query; each has the one error body (``{"error", "message", ...}``)
of :mod:`server.http.errors`.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]
Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
BEARER = "bearer"
ID_PATTERN = "^[0-9A-Za-z_-]{1,64}$"
"""The ids this server makes (uuid4 hex) and those tests and imports use."""
INDEX_PATTERN = "^[0-9]{1,6}$"
_PATH_PARAMETER = re.compile(r"{([a-z_]+)}")
_REF = "#/components/schemas/{model}"


class Access(enum.Enum):
    """Who may call an operation."""

    PUBLIC = "anyone"
    CANDIDATE = "candidate"
    STAFF = "recruiter or admin"


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: str
    """The wrong field, dotted (``questions.0.points``); ``(root)`` for the whole."""
    message: str


class ErrorBody(BaseModel):
    """Every error answer; some codes add details (``problems``, ``limit``)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    error: str
    """A stable code: unauthenticated, forbidden, not_found, method_not_allowed,
    bad_request, too_large, invalid_request, invalid_definition, conflict,
    quota_exceeded, unavailable, internal."""
    message: str
    problems: list[Problem] | None = None
    """422: every wrong field."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: its status and, for JSON, its body's model."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: Schema | None = None
    """The body's schema when it is not JSON of a model (text, CSV)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers, by name, with what each says."""


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    endpoint: Endpoint
    summary: str
    access: Access
    replies: tuple[Reply, ...]
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    description: str = ""
    body_required: bool = True
    """Whether the body may be left out (then its model's defaults)."""

    @property
    def operation_id(self) -> str:
        return self.endpoint.__name__

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)

    def route(self) -> Route:
        return Route(
            self.path, self.endpoint, methods=[self.method], name=self.operation_id
        )

    def all_replies(self) -> list[Reply]:
        """The operation's own replies and the errors that follow from its shape."""
        replies = {reply.status: reply for reply in _implied(self)}
        replies.update((reply.status, reply) for reply in self.replies)
        return [replies[status] for status in sorted(replies)]


def _implied(operation: Operation) -> Iterable[Reply]:
    if operation.access is not Access.PUBLIC:
        yield Reply(401, "No token, or not a valid one", ErrorBody)
        yield Reply(403, f"Only a {operation.access.value} may call this", ErrorBody)
        yield Reply(503, "The database is unavailable: retry later", ErrorBody)
    if operation.path_parameters:
        scoped = (
            " or of another organisation" if operation.access is Access.STAFF else ""
        )
        yield Reply(404, f"No such thing{scoped}", ErrorBody)
    if operation.body is not None:
        yield Reply(400, "The body is not JSON a database can store", ErrorBody)
        yield Reply(413, "The body is larger than 8 MiB", ErrorBody)
    if operation.body is not None or operation.query is not None:
        yield Reply(422, "Wrong fields, each with its path", ErrorBody)


def document(
    operations: Sequence[Operation], *, title: str, version: str, description: str
) -> Schema:
    """The OpenAPI 3.1 document of ``operations``."""
    schemas, refs = _schemas(operations)
    paths: dict[str, dict[str, Schema]] = {}
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        item[operation.method.lower()] = _operation(operation, schemas, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 with JWT_SECRET; claims sub, name, "
                    "role, org (staff), exp",
                }
            },
        },
    }


ModelKey = tuple[type[BaseModel], JsonSchemaMode]


def _schemas(operations: Sequence[Operation]) -> tuple[Schema, dict[ModelKey, Schema]]:
    wanted: dict[ModelKey, None] = {}
    for operation in operations:
        for model in (operation.body, operation.query):
            if model is not None:
                wanted[model, "validation"] = None
        for reply in operation.all_replies():
            if reply.model is not None:
                wanted[reply.model, "serialization"] = None
    refs, top = models_json_schema(list(wanted), ref_template=_REF)
    by_model = {(model, mode): refs[model, mode] for model, mode in wanted}
    return top.get("$defs", {}), by_model


def _operation(
    operation: Operation, schemas: Schema, refs: Mapping[ModelKey, Schema]
) -> Schema:
    body: Schema = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": [] if operation.access is Access.PUBLIC else [{BEARER: []}],
        "responses": {
            str(reply.status): _reply(reply, refs) for reply in operation.all_replies()
        },
    }
    if operation.description:
        body["description"] = operation.description
    parameters = [_path_parameter(name) for name in operation.path_parameters]
    if operation.query is not None:
        query = refs[operation.query, "validation"]
        parameters += _query_parameters(operation.query, _resolve(query, schemas))
    if parameters:
        body["parameters"] = parameters
    if operation.body is not None:
        schema = refs[operation.body, "validation"]
        body["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    return body


def _reply(reply: Reply, refs: Mapping[ModelKey, Schema]) -> Schema:
    body: Schema = {"description": reply.description}
    schema = refs[reply.model, "serialization"] if reply.model else reply.schema
    if schema is not None:
        body["content"] = {reply.media_type: {"schema": schema}}
    if reply.headers:
        body["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return body


def _path_parameter(name: str) -> Schema:
    pattern = INDEX_PATTERN if name == "question_index" else ID_PATTERN
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
    }


def _query_parameters(model: type[BaseModel], schema: Schema) -> list[Schema]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_schema in schema.get("properties", {}).items():
        parameter: Schema = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _not_null(property_schema),
        }
        if is_list(model, name):
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


def _not_null(schema: Schema) -> Schema:
    """A query parameter is absent or a value, never null: ``X | None`` is ``X``."""
    options = [
        option for option in schema.get("anyOf", ()) if option != {"type": "null"}
    ]
    if "anyOf" not in schema or len(options) != 1:
        return schema
    kept = {
        key: value for key, value in schema.items() if key not in ("anyOf", "default")
    }
    return {**options[0], **kept}


def _resolve(schema: Schema, schemas: Schema) -> Schema:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    resolved: Schema = schemas[reference.rsplit("/", 1)[1]]
    return resolved


def is_list(model: type[BaseModel], name: str) -> bool:
    """Whether query parameter ``name`` of ``model`` may be repeated."""
    annotation = model.model_fields[name].annotation
    return typing.get_origin(annotation) in (list, tuple)
