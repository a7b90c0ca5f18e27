"""schemathesis against a running server and the OpenAPI document it serves: for
requests generated from the document, no answer is a 5xx, and every answer has a
documented status, content type, headers and a body of its schema.

One server for the module (uvicorn in a thread, on a database of its own), with an
interview of ``acme``, an invited candidate and a completed attempt, and a disabled
webhook endpoint with the delivery of that completion. Each
generated request is sent as generated (ids that are mostly unknown: 404), then
again with the path's ids replaced by the seeded ones, so that the generated
queries and bodies reach the handlers behind the lookups too. Staff operations are
called with a recruiter token, the candidate's with a candidate token.
``SCHEMATHESIS_EXAMPLES`` sets the examples per operation (default 20: well
under a minute here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocol import audit
from protocol.attempt import begin, change_between, submit
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import parse_definition
from protocol.ids import InterviewId, SessionId, UserId
from protocol.webhooks.events import EventType
from protocol.webhooks.signature import SECRET_BYTES, format_secret
from server.app import create_app, uvicorn_config
from server.auth import issue_token
from server.http import openapi, operations
from server.storage.attempts import DatabaseStorage, Invitee
from server.storage.database import Database
from server.storage.webhooks import EndpointChanges, WebhookStore
from tests.conftest import fresh_database, run
from tests.e2e._client import UNIT_S
from tests.e2e.conftest import SECRET, free_port, make_settings, question

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class Seeded:
    interview_id: InterviewId
    session_id: SessionId
    webhook_id: str
    delivery_id: str


@dataclass(frozen=True)
class Live:
    url: str
    seeded: Seeded

    def headers(self, case: Case[Any]) -> dict[str, str]:
        candidate = case.operation.path == "/api/interviews/active"
        role, org = ("candidate", None) if candidate else ("recruiter", "acme")
        token = issue_token(
            SECRET, sub="rita", role=role, name="Rita", org=org, now_s=time.time()
        )
        return {"Authorization": f"Bearer {token}"}

    @property
    def ids(self) -> dict[str, str]:
        return {
            "interview_id": self.seeded.interview_id,
            "session_id": self.seeded.session_id,
            "question_index": "0",
            "webhook_id": self.seeded.webhook_id,
            "delivery_id": self.seeded.delivery_id,
        }


async def _seed(database_url: str) -> Seeded:
    storage = DatabaseStorage(Database(database_url))
    await storage.connect()
    try:
        definition = parse_definition(
            {
                "title": "Seeded",
                "questions": [question("mcq", 60), question("short_answer", 60)],
            }
        )
        now = int(time.time() * 1000)
        record = await storage.create_interview(
            org="acme", created_by=UserId("rita"), definition=definition, now=now
        )
        candidate = UserId("cand")
        await storage.invite(record.id, [Invitee(candidate, "Cand", None)], now)
        attempt = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=record.id,
            title=record.title,
            candidate_id=candidate,
            number=1,
            questions=record.questions,
            grace_ms=record.settings.grace_ms,
            now=now,
        )
        started = AuditEntry(now, "candidate:cand", AuditKind.STARTED)
        await storage.create_attempt(attempt, candidate_name="Cand", audit=[started])
        webhooks = WebhookStore(storage.database)
        hook = await webhooks.create_endpoint(
            org="acme",
            url="http://127.0.0.1:9/",
            description="",
            event_types=list(EventType),
            enabled=True,
            secret=format_secret(b"k" * SECRET_BYTES),
            by="recruiter:rita",
            now=now,
            limit=10,
        )
        for index, text in enumerate(["b", "an answer"]):
            after = submit(attempt, index, text, now + index + 1).attempt
            done = [] if after.in_progress else [audit.completed(after, "cand", now)]
            await storage.commit(change_between(attempt, after), fence=None, audit=done)
            attempt = after
        # Disabled before the server starts: it sends nothing.
        await webhooks.update_endpoint(
            "acme", hook.id, EndpointChanges(enabled=False), now
        )
        page = await webhooks.deliveries("acme", hook.id, after=None, limit=1)
        assert page is not None and page.deliveries
        return Seeded(record.id, attempt.session_id, hook.id, page.deliveries[0].id)
    finally:
        await storage.disconnect()


@contextlib.contextmanager
def _serving(database_url: str) -> Iterator[str]:
    """uvicorn in a thread of its own until the block ends."""
    settings = make_settings(database_url)
    port = free_port()
    server = uvicorn.Server(
        uvicorn_config(create_app(settings), settings, host="127.0.0.1", port=port)
    )
    started = threading.Event()

    async def serve() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        started.set()
        await serving

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(3 * UNIT_S) and server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(3 * UNIT_S)


@pytest.fixture(scope="module")
def live(_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    with fresh_database(_template, folder) as database_url:
        seeded = run(_seed(database_url))
        with _serving(database_url) as url:
            yield Live(url, seeded)


# The document the code makes; the served one is checked to be the same below
# (the operations must be known when the tests are collected, before any server).
SCHEMA = schemathesis.openapi.from_dict(openapi())


def _operations() -> list[APIOperation[Any, Any, Any, Any]]:
    found = []
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), result  # the document validates
        found.append(result.ok())
    return found


OPERATIONS = _operations()
LABELS = [operation.label for operation in OPERATIONS]
NOT_FUZZED = {"POST /api/webhooks", "PATCH /api/webhooks/{webhook_id}"}
"""A generated webhook URL is resolved (a DNS query for a made-up host), and one
that is a public address would be called by the dispatcher: tests send nothing off
this machine. tests/integration/test_webhooks_http.py covers these two."""
CASES = [
    (operation.label, mode)
    for operation in OPERATIONS
    if operation.label not in NOT_FUZZED
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # Negative data needs something to break: parameters or a body.
    if mode is GenerationMode.POSITIVE
    or operation.path_parameters
    or operation.query
    or operation.body
]


def test_the_server_serves_the_document_the_operations_come_from(live: Live) -> None:
    served = schemathesis.openapi.from_url(f"{live.url}/openapi.json")

    assert served.raw_schema == SCHEMA.raw_schema
    assert len(LABELS) == len(operations())
    assert NOT_FUZZED <= set(LABELS)


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(
    live: Live, label: str, mode: GenerationMode
) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def answers_within_the_schema(case: Case[Any]) -> None:
        headers = live.headers(case)
        case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)
        known = {name: live.ids[name] for name in case.path_parameters or {}}
        if known:
            case.path_parameters = {**(case.path_parameters or {}), **known}
            case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)

    answers_within_the_schema()
