from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

# No stubs: types-jsonschema is not a dependency, and these tests need no more.
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

from protocol.messages import Completed, Error, Hello, User, serialize, tick_text
from protocol.schema import schema_text

PUBLISHED = Path(__file__).parents[3] / "docs" / "protocol.schema.json"
URI = "https://interviews.example/protocol.schema.json"
NOW = 1_767_000_000_000

# One of each frame of PROTOCOL.md section 1, with the optional fields too.
CLIENT_FRAMES: list[dict[str, Any]] = [
    {"type": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
    {"type": "start", "interview_id": "int_1"},
    {"type": "resume"},
    {"type": "resume", "takeover": True, "lease": "l-42"},
    {"type": "restart"},
    {"type": "answer", "question_index": 0, "answer": "b"},
    {"type": "answer", "question_index": 1, "answer": "HTTP/2", "ref": "q1"},
    {"type": "answer", "question_index": 1, "answer": "HTTP/2", "ref": 7},
    {"type": "draft", "question_index": 2, "answer": "def f(x):"},
    {"type": "ping", "client_time": NOW},
    {"type": "ping", "client_time": 123.5},
    {"type": "signal", "kind": "focus_lost"},
    {"type": "signal", "kind": "paste", "detail": "120 characters"},
]
QUESTION = {
    "index": 0,
    "type": "mcq",
    "text": "Which status code means Not Found?",
    "options": [{"id": "a", "text": "200"}, {"id": "b", "text": "404"}],
    "language": None,
    "points": 1.0,
    "difficulty": "easy",
    "time_limit_s": 60,
}
SERVER_FRAMES: list[dict[str, Any]] = [
    {
        "type": "hello",
        "protocol": 1,
        "user": {"id": "alice", "name": "Alice", "role": "candidate"},
        "server_time": NOW,
        "tick_interval_ms": 1000,
        "active_session": None,
    },
    {
        "type": "hello",
        "protocol": 1,
        "user": {"id": "alice", "name": "Alice", "role": "candidate"},
        "server_time": NOW,
        "tick_interval_ms": 1000,
        "active_session": {
            "session_id": "s1",
            "interview_id": "int_1",
            "title": "Backend",
            "question_index": 2,
            "question_count": 6,
            "remaining_ms": 41_000,
        },
    },
    {
        "type": "state",
        "session_id": "s1",
        "interview": {"id": "int_1", "title": "Backend"},
        "status": "in_progress",
        "question_index": 0,
        "question_count": 6,
        "question": QUESTION,
        "deadline": NOW + 60_000,
        "remaining_ms": 60_000,
        "server_time": NOW,
        "draft": None,
        "attempt": 1,
        "lease": "l-42",
    },
    {
        "type": "tick",
        "question_index": 0,
        "deadline": NOW + 60_000,
        "remaining_ms": 59_000,
        "server_time": NOW + 1000,
    },
    {
        "type": "answer_ack",
        "ref": "q1",
        "question_index": 1,
        "status": "duplicate",
        "time_taken_ms": 1234,
    },
    {"type": "draft_ack", "question_index": 2, "saved_at": NOW},
    {
        "type": "time_expired",
        "question_index": 3,
        "auto_submitted": True,
        "had_draft": False,
    },
    {"type": "completed", "session_id": "s1", "message": "Thank you"},
    {"type": "pong", "client_time": 123.5, "server_time": NOW},
    {"type": "superseded", "reason": "taken_over"},
    {"type": "error", "code": "too_late", "message": "the question closed"},
    {"type": "error", "code": "session_locked", "message": "in use", "ref": 7},
]
INVALID_CLIENT_FRAMES: list[Any] = [
    [{"type": "ping", "client_time": 1}],
    {"client_time": 1},
    {"type": "teleport"},
    {"type": "auth"},
    {"type": "start", "interview_id": 5},
    {"type": "resume", "takeover": "yes"},
    {"type": "answer", "question_index": "0", "answer": "b"},
    {"type": "answer", "question_index": 0, "answer": 1},
    {"type": "draft", "question_index": 0},
    {"type": "ping", "client_time": "now"},
    {"type": "signal", "kind": "telepathy"},
]
INVALID_SERVER_FRAMES: list[Any] = [
    {"type": "hello", "protocol": 1, "server_time": NOW},
    {"type": "tick", "question_index": 0, "deadline": NOW},
    {**SERVER_FRAMES[4], "status": "maybe"},
    {"type": "time_expired", "question_index": 0, "auto_submitted": False},
    {"type": "superseded", "reason": "bored"},
    {"type": "error", "code": "oops", "message": "?"},
    {"type": "state", "session_id": "s1"},
]


@functools.cache
def validator(pointer: str) -> Draft202012Validator:
    """Validates against ``pointer`` of the published document, loaded whole."""
    document = json.loads(PUBLISHED.read_text())
    registry: Registry[Any] = Registry().with_resource(
        URI, Resource.from_contents(document)
    )
    return Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=registry)


def test_the_published_schema_matches_the_code() -> None:
    assert PUBLISHED.read_text() == schema_text(), "run `make schema` and commit"


def test_the_published_schema_is_a_valid_json_schema_document() -> None:
    document = json.loads(PUBLISHED.read_text())

    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=lambda frame: frame["type"])
def test_every_client_frame_of_the_protocol_validates(frame: dict[str, Any]) -> None:
    assert list(validator("/client_to_server").iter_errors(frame)) == []
    assert not validator("/server_to_client").is_valid(frame)


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=lambda frame: frame["type"])
def test_every_server_frame_of_the_protocol_validates(frame: dict[str, Any]) -> None:
    assert list(validator("/server_to_client").iter_errors(frame)) == []
    assert not validator("/client_to_server").is_valid(frame)


def test_frames_the_server_writes_validate() -> None:
    user = User(id="alice", name="Alice", role="candidate")
    texts = [
        serialize(
            Hello(
                user=user, server_time=NOW, tick_interval_ms=1000, active_session=None
            )
        ),
        serialize(Completed(session_id="s1", message="done")),
        serialize(Error(code="bad_frame", message="expected a JSON object")),
        tick_text(0, NOW + 60_000, 59_000, NOW + 1000),
    ]

    for text in texts:
        assert validator("/server_to_client").is_valid(json.loads(text)), text


@pytest.mark.parametrize("frame", INVALID_CLIENT_FRAMES, ids=str)
def test_an_invalid_client_frame_fails(frame: Any) -> None:
    assert not validator("/client_to_server").is_valid(frame)


@pytest.mark.parametrize("frame", INVALID_SERVER_FRAMES, ids=str)
def test_an_invalid_server_frame_fails(frame: Any) -> None:
    assert not validator("/server_to_client").is_valid(frame)


def test_each_frame_is_a_definition_of_the_document() -> None:
    assert validator("/$defs/SubmitAnswer").is_valid(CLIENT_FRAMES[5])
    assert not validator("/$defs/SubmitAnswer").is_valid(CLIENT_FRAMES[0])


def test_the_schema_names_every_frame_type() -> None:
    schema = json.loads(schema_text())
    text = json.dumps(schema)
    for kind in ["auth", "start", "resume", "restart", "answer", "draft", "ping"]:
        assert f'"const": "{kind}"' in text
    for kind in ["hello", "state", "tick", "answer_ack", "draft_ack", "pong"]:
        assert f'"const": "{kind}"' in text
    for kind in ["time_expired", "completed", "superseded", "error", "signal"]:
        assert f'"const": "{kind}"' in text
