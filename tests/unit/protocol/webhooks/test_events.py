from __future__ import annotations

import json

import pytest

from protocol.webhooks.events import EventType, event_body, message_id, timestamp


def test_a_body_is_type_timestamp_and_data_in_compact_ascii_json() -> None:
    body = event_body(
        EventType.SESSION_COMPLETED, 1_800_000_000_250, {"candidate_id": "zoë"}
    )

    assert body == (
        '{"type":"session.completed","timestamp":"2027-01-15T08:00:00.250Z",'
        '"data":{"candidate_id":"zo\\u00eb"}}'
    )
    assert body.isascii()
    assert json.loads(body)["data"] == {"candidate_id": "zoë"}


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_800_000_000_001, "2027-01-15T08:00:00.001Z"),
        (1_800_000_000_999, "2027-01-15T08:00:00.999Z"),
    ],
)
def test_timestamps_are_utc_with_milliseconds(at: int, text: str) -> None:
    assert timestamp(at) == text


def test_message_ids_are_prefixed_hex_without_dots() -> None:
    assert message_id("0af3") == "msg_0af3"


@pytest.mark.parametrize("token", ["", "0A", "ab.cd", "xyz"])
def test_a_message_id_of_anything_but_lowercase_hex_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="hex token"):
        message_id(token)


def test_the_event_types_are_the_published_ones() -> None:
    assert [str(kind) for kind in EventType] == [
        "session.completed",
        "session.evaluated",
        "score.overridden",
    ]
