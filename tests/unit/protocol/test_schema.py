from __future__ import annotations

import json
from pathlib import Path

from protocol.schema import schema_text

PUBLISHED = Path(__file__).parents[3] / "docs" / "protocol.schema.json"


def test_the_published_schema_matches_the_code() -> None:
    assert PUBLISHED.read_text() == schema_text(), "run `make schema` and commit"


def test_the_schema_names_every_frame_type() -> None:
    schema = json.loads(schema_text())
    text = json.dumps(schema)
    for kind in ["auth", "start", "resume", "restart", "answer", "draft", "ping"]:
        assert f'"const": "{kind}"' in text
    for kind in ["hello", "state", "tick", "answer_ack", "draft_ack", "pong"]:
        assert f'"const": "{kind}"' in text
    for kind in ["time_expired", "completed", "superseded", "error", "signal"]:
        assert f'"const": "{kind}"' in text
