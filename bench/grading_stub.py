"""An OpenAI-compatible model for ``python -m bench.grading``: valid judgements, late.

``python -m bench.grading_stub [--latency-ms MS] [--port PORT]`` serves
``POST /v1/chat/completions`` on 127.0.0.1 and prints ``port <N>`` once it listens.
Every request is answered, after ``--latency-ms``, with a judgement that fits the
schema the grader sent (``response_format.json_schema``): a short answer's, a code
answer's (one score per criterion the prompt lists) or a summary's. It runs in its
own process so that its CPU is not the bench's nor the workers'; it is a bare ASGI
callable under uvicorn (no routing, no validation) to cost as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import uvicorn

HOST = "127.0.0.1"
DEFAULT_CRITERIA = ("correctness", "efficiency", "readability")
CRITERIA_BLOCK = re.compile(r"^Evaluation criteria:\n((?:\d+\. .+\n?)+)", re.MULTILINE)
NUMBERED = re.compile(r"^\d+\. (.+)$", re.MULTILINE)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def criteria_in(prompt: str) -> tuple[str, ...]:
    """The criteria a code prompt asks to score (the numbered lines after
    ``Evaluation criteria:``), or the grader's defaults when it lists none."""
    block = CRITERIA_BLOCK.search(prompt)
    if block is None:
        return DEFAULT_CRITERIA
    return (
        tuple(name.strip() for name in NUMBERED.findall(block[1])) or DEFAULT_CRITERIA
    )


def stub_reply(schema: dict[str, Any], prompt: str = "") -> dict[str, Any]:
    """A judgement that validates against the grader's JSON ``schema``.

    Recognised by its required fields: ``semantic_score`` (short answer),
    ``criteria`` (code: every criterion of ``prompt`` at 7 of 10), ``recommendation``
    (summary). Anything else gets a value per property, by type.
    """
    required = set(schema.get("required", ()))
    if "semantic_score" in required:
        return {
            "relevance": 1.0,
            "keywords_explained": [],
            "semantic_score": 1.5,
            "feedback": "A reasonable answer.",
            "strengths": ["clear"],
            "improvements": ["more detail"],
        }
    if "criteria" in required:
        return {
            "criteria": [
                {"criterion": name, "score": 7, "comment": "fine"}
                for name in criteria_in(prompt)
            ],
            "strengths": ["works"],
            "improvements": ["tests"],
            "overall_feedback": "Solid.",
        }
    if "recommendation" in required:
        return {"summary": "Capable. Clear. Some gaps.", "recommendation": "hire"}
    properties: dict[str, Any] = schema.get("properties", {})
    return {name: _value_of(spec) for name, spec in properties.items()}


def _value_of(spec: dict[str, Any]) -> object:
    if "enum" in spec:
        return spec["enum"][0]
    kind = spec.get("type")
    if kind in ("number", "integer"):
        return 1
    if kind == "array":
        return []
    if kind == "boolean":
        return True
    if kind == "object":
        return {}
    return "ok"


def completion_body(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class StubModel:
    """The ASGI application: every POST gets a completion after ``latency_s``."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        try:
            request = json.loads(body)
            schema = request["response_format"]["json_schema"]["schema"]
            prompt = "\n".join(str(m.get("content", "")) for m in request["messages"])
            content = json.dumps(stub_reply(schema, prompt))
            reply = completion_body(str(request.get("model", "stub")), content)
            status = 200
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": {"message": f"bad request: {exc!r}", "type": "stub"}}
            status = 400
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        payload = json.dumps(reply).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": payload})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grading_stub")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args(argv)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, arguments.port))
    print(f"port {listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        StubModel(arguments.latency_ms / 1000),
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=4096,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run(sockets=[listener])
    sys.exit(0)


if __name__ == "__main__":
    main()
