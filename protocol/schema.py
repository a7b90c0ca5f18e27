"""``python -m protocol.schema`` prints the JSON Schema of every wire frame.

The output is committed as ``docs/protocol.schema.json`` (``make schema``) and served
at ``GET /protocol.schema.json``; a unit test fails when the file is stale.
"""

from __future__ import annotations

import json

from protocol.messages import frame_schemas


def schema_text() -> str:
    return json.dumps(frame_schemas(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover - a two-line entry point
    print(schema_text(), end="")
