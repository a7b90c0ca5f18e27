"""Wire frames: parsing, serialising and the published schema (protocol/messages.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from protocol.errors import ErrorCode, InvalidMessage
from protocol.messages import (
    CLIENT_FRAME_TYPES,
    AnswerAck,
    Auth,
    ClientFrame,
    Completed,
    DraftAck,
    Error,
    Ping,
    Pong,
    QuestionOut,
    Restart,
    Resume,
    SaveDraft,
    Signal,
    Start,
    SubmitAnswer,
    Superseded,
    Tick,
    TimeExpired,
    frame_schemas,
    is_tick,
    parse_client_message,
    serialize,
    tick_text,
)

SERVER_FRAME_TYPES = (
    "hello",
    "state",
    "tick",
    "answer_ack",
    "draft_ack",
    "time_expired",
    "completed",
    "pong",
    "superseded",
    "error",
)
HIDDEN_KEYS = (
    "correct_answer",
    "sample_solution",
    "expected_keywords",
    "evaluation_criteria",
    "tests",
)


def frame(**fields: object) -> str:
    return json.dumps(fields)


# -- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (frame(type="auth", token="jwt"), Auth(token="jwt")),
        (frame(type="start", interview_id="i-1"), Start(interview_id="i-1")),
        (frame(type="resume"), Resume(takeover=False)),
        (frame(type="resume", takeover=True), Resume(takeover=True)),
        (frame(type="resume", lease="l-1"), Resume(lease="l-1")),
        (frame(type="restart"), Restart()),
        (
            frame(type="answer", question_index=0, answer="b"),
            SubmitAnswer(question_index=0, answer="b"),
        ),
        (
            frame(type="answer", question_index=2, answer="", ref="r-1"),
            SubmitAnswer(question_index=2, answer="", ref="r-1"),
        ),
        (
            frame(type="answer", question_index=1, answer="x", ref=7),
            SubmitAnswer(question_index=1, answer="x", ref=7),
        ),
        (
            frame(type="draft", question_index=0, answer="def f("),
            SaveDraft(question_index=0, answer="def f("),
        ),
        (
            frame(type="ping", client_time=1_700_000_000_000),
            Ping(client_time=1_700_000_000_000),
        ),
        (frame(type="ping", client_time=12.5), Ping(client_time=12.5)),
        (frame(type="signal", kind="paste"), Signal(kind="paste")),
        (
            frame(type="signal", kind="focus_lost", detail="tab hidden"),
            Signal(kind="focus_lost", detail="tab hidden"),
        ),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_every_client_frame_type_parses(text: str, expected: ClientFrame) -> None:
    assert parse_client_message(text) == expected


def test_the_parsed_frames_cover_every_client_frame_type() -> None:
    assert set(CLIENT_FRAME_TYPES) == {
        "auth",
        "start",
        "resume",
        "restart",
        "answer",
        "draft",
        "ping",
        "signal",
    }


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    text = frame(type="answer", question_index=0, answer="\\u0000")

    assert parse_client_message(text) == SubmitAnswer(
        question_index=0, answer="\\u0000"
    )


def test_unknown_extra_fields_are_ignored() -> None:
    text = frame(type="answer", question_index=0, answer="a", client_version="2.1")

    assert parse_client_message(text) == SubmitAnswer(question_index=0, answer="a")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "expected a JSON object, got invalid JSON"),
        ("", "expected a JSON object, got invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ("42", "expected a JSON object, got int"),
        ('"answer"', "expected a JSON object, got str"),
        ("null", "expected a JSON object, got NoneType"),
        ("[" * 100_000, "expected a JSON object, got too deeply nested JSON"),
        (
            '{"type": "answer", "question_index": 0, "answer": "\\ud800"}',
            "expected a JSON object, got invalid JSON",
        ),
        (
            '{"type": "draft", "question_index": 0, "answer": "a\\u0000"}',
            "expected JSON without NUL characters (\\u0000)",
        ),
        ("{}", "got no type"),
        (frame(type="shout"), "got type 'shout'"),
        (frame(type=3), "got type '3'"),
        (frame(type="auth"), "token: field required"),
        (frame(type="auth", token=5), "token: input should be a valid string"),
        (frame(type="start"), "interview_id: field required"),
        (frame(type="answer", answer="a"), "question_index: field required"),
        (frame(type="answer", question_index=0), "answer: field required"),
        (
            frame(type="answer", question_index="1", answer="a"),
            "question_index: input should be a valid integer",
        ),
        (
            frame(type="answer", question_index=True, answer="a"),
            "question_index: input should be a valid integer",
        ),
        (
            frame(type="answer", question_index=1.0, answer="a"),
            "question_index: input should be a valid integer",
        ),
        (
            frame(type="answer", question_index=0, answer=["a"]),
            "answer: input should be a valid string",
        ),
        (
            frame(type="draft", question_index="0", answer="a"),
            "question_index: input should be a valid integer",
        ),
        (
            frame(type="resume", takeover="yes"),
            "takeover: input should be a valid boolean",
        ),
        (frame(type="resume", takeover=1), "takeover: input should be a valid boolean"),
        (frame(type="resume", lease=7), "lease: input should be a valid string"),
        (frame(type="ping"), "client_time: field required"),
        (frame(type="ping", client_time="123"), "input should be a valid number"),
        (frame(type="ping", client_time=True), "input should be a valid number"),
        ('{"type": "ping", "client_time": NaN}', "input should be a finite number"),
        ('{"type": "ping", "client_time": 1e999}', "input should be a finite number"),
        (frame(type="signal", kind="screenshot"), "kind: input should be 'focus_lost'"),
        (frame(type="signal"), "kind: field required"),
        (
            frame(type="signal", kind="copy", detail="x" * 1001),
            "detail: string should have at most 1000 characters",
        ),
    ],
)
def test_a_bad_frame_raises_invalid_message_with_a_helpful_reason(
    text: str, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_client_message(text)

    assert reason in caught.value.reason
    assert caught.value.reason[0].islower()
    assert not caught.value.reason.endswith(".")
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    ("ref", "kept"),
    [("r-9", "r-9"), (9, 9), (True, None), (None, None), ([1], None), (1.5, None)],
)
def test_a_bad_frame_keeps_its_ref_when_usable(ref: object, kept: object) -> None:
    text = frame(type="answer", question_index="0", answer="a", ref=ref)

    with pytest.raises(InvalidMessage) as caught:
        parse_client_message(text)

    assert caught.value.ref == kept


def test_an_unknown_type_keeps_its_ref() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_client_message(frame(type="shout", ref="r-1"))

    assert caught.value.ref == "r-1"


def test_a_bad_frame_reports_at_most_three_problems() -> None:
    text = frame(type="answer", question_index="0", answer=0, ref=[])

    with pytest.raises(InvalidMessage) as caught:
        parse_client_message(text)

    assert caught.value.reason.count(";") == 2


def test_a_long_unknown_type_is_truncated_in_the_reason() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_client_message(frame(type="x" * 10_000))

    assert len(caught.value.reason) < 200


# -- serialising --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question_index", "deadline", "remaining_ms", "server_time"),
    [
        (0, 1_700_000_060_000, 60_000, 1_700_000_000_000),
        (3, 1_700_000_060_000, 0, 1_700_000_070_000),
        (199, 2**53, 1, 2**53 - 1),
        (0, 0, 0, 0),
        (1, -1, 0, 5),
    ],
)
def test_tick_text_is_byte_for_byte_the_serialized_tick(
    question_index: int, deadline: int, remaining_ms: int, server_time: int
) -> None:
    text = tick_text(question_index, deadline, remaining_ms, server_time)

    tick = Tick(
        question_index=question_index,
        deadline=deadline,
        remaining_ms=remaining_ms,
        server_time=server_time,
    )
    assert text == serialize(tick)
    assert Tick.model_validate(json.loads(text)) == tick
    assert json.loads(text) == {
        "type": "tick",
        "question_index": question_index,
        "deadline": deadline,
        "remaining_ms": remaining_ms,
        "server_time": server_time,
    }


def test_a_tick_is_recognised_by_its_text_whoever_built_it() -> None:
    assert is_tick(tick_text(0, 10, 5, 5))
    assert is_tick(
        serialize(Tick(question_index=1, deadline=2, remaining_ms=0, server_time=3))
    )


@pytest.mark.parametrize(
    "frame",
    [
        Pong(client_time=1, server_time=2),
        Superseded(),
        Error(code=ErrorCode.TOO_LATE, message="tick"),
        TimeExpired(question_index=0, had_draft=False),
        Completed(session_id="tick", message="tick"),
        DraftAck(question_index=0, saved_at=1),
        AnswerAck(ref="tick", question_index=0, status="accepted", time_taken_ms=1),
    ],
    ids=lambda frame: frame.type,
)
def test_no_other_server_frame_is_taken_for_a_tick(
    frame: Pong | Superseded | Error | TimeExpired | Completed | DraftAck | AnswerAck,
) -> None:
    assert not is_tick(serialize(frame))


def test_an_error_without_ref_omits_it() -> None:
    text = serialize(Error(code=ErrorCode.TOO_LATE, message="time is over"))

    assert json.loads(text) == {
        "type": "error",
        "code": "too_late",
        "message": "time is over",
    }


@pytest.mark.parametrize("ref", ["r-1", 17])
def test_an_error_with_ref_includes_it(ref: str | int) -> None:
    text = serialize(Error(code=ErrorCode.BAD_FRAME, message="bad", ref=ref))

    assert json.loads(text) == {
        "type": "error",
        "code": "bad_frame",
        "message": "bad",
        "ref": ref,
    }


def test_an_answer_ack_always_carries_its_ref() -> None:
    ack = AnswerAck(ref=None, question_index=0, status="accepted", time_taken_ms=5)

    assert json.loads(serialize(ack)) == {
        "type": "answer_ack",
        "ref": None,
        "question_index": 0,
        "status": "accepted",
        "time_taken_ms": 5,
    }


# -- published schema ---------------------------------------------------------------


def inlined(schema: object, defs: dict[str, object]) -> object:
    """``schema`` with every ``$ref`` to ``#/$defs/<name>`` replaced by its target."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: inlined(value, defs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inlined(value, defs) for value in schema]
    return schema


def direction(name: str) -> dict[str, object]:
    """The schema of one direction's frames, its references inlined."""
    schemas = frame_schemas()
    frames = inlined(schemas[name], schemas["$defs"])
    assert isinstance(frames, dict)
    return frames


def property_names(schema: object) -> Iterator[str]:
    """Every property name declared anywhere in ``schema``."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            yield from properties
        for value in schema.values():
            yield from property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from property_names(value)


def type_names(schema: dict[str, object]) -> set[str]:
    frames = schema["oneOf"]
    assert isinstance(frames, list)
    return {frame["properties"]["type"]["const"] for frame in frames}


def test_the_schema_names_every_client_and_server_frame_type() -> None:
    schemas = frame_schemas()

    assert type_names(direction("client_to_server")) == set(CLIENT_FRAME_TYPES)
    assert type_names(direction("server_to_client")) == set(SERVER_FRAME_TYPES)
    assert schemas["protocol"] == 1
    json.dumps(schemas)  # publishable as is


def test_no_server_frame_schema_carries_an_answer_key_or_hidden_tests() -> None:
    server = direction("server_to_client")

    names = set(property_names(server))

    assert {"question", "options", "time_limit_s"} <= names  # the walk works
    assert names.isdisjoint(HIDDEN_KEYS)


def test_the_question_frame_has_no_field_for_keys() -> None:
    assert set(QuestionOut.model_fields).isdisjoint(HIDDEN_KEYS)
