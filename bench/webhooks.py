"""``python -m bench.webhooks``: webhook deliveries per second to a local receiver,
and nothing lost across a SIGKILL of the sender.

N attempts are completed in a fresh database (each completion queues one
``session.completed`` delivery, in its own transaction, as the server does), for one
endpoint on a receiver in this process (127.0.0.1, uvicorn; every signature checked
with the ``standardwebhooks`` reference). Then ``python -m server serve`` sends them;
after ``--kill-after`` distinct messages arrived it is killed with SIGKILL and a
second ``serve`` takes over once the first one's leases lapse (twice
``--timeout-s``). The report: messages lost (must be 0), duplicates (at least once:
a message in flight at the kill is sent again under the same ``webhook-id``), bad
signatures, and deliveries per second before the kill, after it, and for an
uninterrupted run with ``--kill-after 0``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks import Webhook
from starlette.types import Receive, Scope, Send

from bench.server import BenchError, free_port, spawn, wait_healthy
from bench.storage import admin, database_url
from protocol.attempt import begin
from protocol.audit import SERVER, AuditEntry, AuditKind
from protocol.definition import parse_definition
from protocol.ids import SessionId, UserId
from protocol.webhooks.events import EventType
from protocol.webhooks.schedule import DeliveryStatus
from protocol.webhooks.signature import SECRET_BYTES, format_secret
from server.storage.attempts import DatabaseStorage
from server.storage.database import Database
from server.storage.migrations import migrate
from server.storage.tables import webhook_deliveries
from server.storage.webhooks import WebhookStore

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
SETUP_CONCURRENCY = 8
DONE_TIMEOUT_S = 120.0


# -- pure figures (tests/unit/test_bench_webhooks.py) ---------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    events: int
    received: int
    """Distinct messages (``webhook-id``) that arrived."""
    lost: int
    duplicates: int
    bad_signatures: int
    before_kill_per_s: float | None
    after_kill_per_s: float | None
    recovery_s: float | None
    """From the kill to the first new message sent by the second sender."""
    overall_per_s: float | None


def rate(count: int, start: float | None, end: float | None) -> float | None:
    """``count`` per second between ``start`` and ``end``; ``None`` for no span."""
    if start is None or end is None or end <= start or count < 2:
        return None
    return round((count - 1) / (end - start), 1)


def figures(
    events: int,
    first_seen: Sequence[float],
    *,
    arrivals: int,
    bad_signatures: int,
    killed_at: float | None,
) -> Figures:
    """The report of a run from the times distinct messages first arrived (in
    order) and the kill's time (``None``: no kill)."""
    seen = sorted(first_seen)
    before = [t for t in seen if killed_at is None or t <= killed_at]
    after = [] if killed_at is None else [t for t in seen if t > killed_at]
    return Figures(
        events=events,
        received=len(seen),
        lost=events - len(seen),
        duplicates=arrivals - len(seen),
        bad_signatures=bad_signatures,
        before_kill_per_s=rate(len(before), *_span(before)),
        after_kill_per_s=rate(len(after), *_span(after)),
        recovery_s=(
            None if killed_at is None or not after else round(after[0] - killed_at, 2)
        ),
        overall_per_s=rate(len(seen), *_span(seen)),
    )


def _span(times: Sequence[float]) -> tuple[float | None, float | None]:
    return (times[0], times[-1]) if times else (None, None)


def format_figures(report: Figures, mode: dict[str, object]) -> str:
    lines = [
        "== bench.webhooks ==",
        "mode: " + ", ".join(f"{key}={value}" for key, value in mode.items()),
        f"events {report.events}, received {report.received}, LOST {report.lost}, "
        f"duplicates {report.duplicates}, bad signatures {report.bad_signatures}",
        f"deliveries/s: before the kill {report.before_kill_per_s}, after it "
        f"{report.after_kill_per_s}, overall {report.overall_per_s}",
        f"recovery after SIGKILL (restart + lease): {report.recovery_s} s",
    ]
    return "\n".join(lines)


# -- the receiver ---------------------------------------------------------------------


@dataclass
class Counter:
    """An ASGI receiver that checks every signature and notes first arrivals."""

    secret: str
    first_seen: dict[str, float] = field(default_factory=dict)
    arrivals: int = 0
    bad_signatures: int = 0
    want: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, distinct: int) -> asyncio.Event:
        """An event set once ``distinct`` messages arrived."""
        self.want = distinct
        self.reached = asyncio.Event()
        if len(self.first_seen) >= distinct:
            self.reached.set()
        return self.reached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.arrivals += 1
        try:
            Webhook(self.secret).verify(body, headers)
        except Exception:
            self.bad_signatures += 1
        self.first_seen.setdefault(headers.get("webhook-id", ""), time.monotonic())
        if len(self.first_seen) >= self.want:
            self.reached.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def receiving(counter: Counter) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        counter,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                raise BenchError("the receiver did not start")
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await serving


# -- a run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    kill_after: int
    timeout_s: float
    concurrency: int
    database_url: str | None


async def run(options: Options) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        async with _database(options, Path(folder)) as url:
            return await _run(options, url, Path(folder))


@contextlib.asynccontextmanager
async def _database(options: Options, folder: Path) -> AsyncIterator[str]:
    if options.database_url is None:
        url = f"sqlite:///{folder}/bench.db"
        await migrate(url)
        yield url
        return
    name = f"bench_webhooks_{uuid.uuid4().hex[:10]}"
    await admin(options.database_url, f'CREATE DATABASE "{name}"')
    try:
        url = database_url(options.database_url, name)
        await migrate(url)
        yield url
    finally:
        await admin(
            options.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )


async def _run(options: Options, url: str, folder: Path) -> Figures:
    counter = Counter(format_secret(secrets.token_bytes(SECRET_BYTES)))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": url,
        "JWT_SECRET": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_TIMEOUT_S": str(options.timeout_s),
        "WEBHOOK_CONCURRENCY": str(options.concurrency),
        "WEBHOOK_POLL_MS": "100",
    }
    async with receiving(counter) as port:
        storage = DatabaseStorage(Database(url))
        await storage.connect()
        try:
            await _queue(storage, counter.secret, port, options.events)
            print(f"queued {options.events} deliveries; sending", flush=True)
            killed_at = await _send(options, env, folder, counter)
            await _recorded(storage, options.events)
        finally:
            await storage.disconnect()
    return figures(
        options.events,
        list(counter.first_seen.values()),
        arrivals=counter.arrivals,
        bad_signatures=counter.bad_signatures,
        killed_at=killed_at,
    )


async def _queue(storage: DatabaseStorage, secret: str, port: int, events: int) -> None:
    """One endpoint, and ``events`` completed attempts (a delivery each)."""
    now = time.time_ns() // 1_000_000
    definition = parse_definition(
        {
            "title": "Webhook bench",
            "questions": [
                {
                    "type": "mcq",
                    "text": "?",
                    "points": 1,
                    "time_limit_s": 600,
                    "options": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}],
                    "correct_answer": "a",
                }
            ],
        }
    )
    interview = await storage.create_interview(
        org="bench", created_by=UserId("bench"), definition=definition, now=now
    )
    await WebhookStore(storage.database).create_endpoint(
        org="bench",
        url=f"http://127.0.0.1:{port}/hook",
        description="bench",
        event_types=[EventType.SESSION_COMPLETED],
        enabled=True,
        secret=secret,
        by="bench",
        now=now,
        limit=1,
    )
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(number: int) -> None:
        attempt = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=interview.id,
            title=interview.title,
            candidate_id=UserId(f"c{number}"),
            number=1,
            questions=interview.questions,
            grace_ms=0,
            now=now,
        )
        async with slots:
            await storage.create_attempt(attempt, candidate_name="C", audit=[])
            done = AuditEntry(now, SERVER, AuditKind.COMPLETED)
            await storage.append_audit(attempt.session_id, [done])

    await asyncio.gather(*(one(number) for number in range(events)))


async def _send(
    options: Options, env: dict[str, str], folder: Path, counter: Counter
) -> float | None:
    """Serve until every message arrived, killing the first sender midway; the
    kill's time."""
    killed_at = None
    first = spawn(env, folder / "serve-1.log")
    try:
        await asyncio.to_thread(wait_healthy, first.http_url, first.process)
        if options.kill_after:
            await _within(counter.expect(options.kill_after).wait(), first.log_tail)
            first.process.kill()  # SIGKILL: no shutdown, no lease given back
            killed_at = time.monotonic()
            await asyncio.to_thread(first.process.wait)
            print(
                f"killed the sender at {len(counter.first_seen)} messages", flush=True
            )
        else:
            await _within(counter.expect(options.events).wait(), first.log_tail)
            return None
    finally:
        await asyncio.to_thread(first.stop)
    second = spawn(env, folder / "serve-2.log")
    try:
        await _within(counter.expect(options.events).wait(), second.log_tail)
    finally:
        await asyncio.to_thread(second.stop)
    return killed_at


async def _within(waiting: Coroutine[Any, Any, object], log: Callable[[], str]) -> None:
    try:
        async with asyncio.timeout(DONE_TIMEOUT_S):
            await waiting
    except TimeoutError:
        raise BenchError(f"messages stopped arriving; server log:\n{log()}") from None


async def _recorded(storage: DatabaseStorage, events: int) -> None:
    """Until every delivery is recorded delivered (the receiver saw them first)."""
    import sqlalchemy as sa

    query = sa.select(sa.func.count()).where(
        webhook_deliveries.c.status == DeliveryStatus.DELIVERED.value
    )
    count = await storage.database.fetch_val(query)
    if count != events:
        print(f"warning: {count} of {events} deliveries recorded as delivered")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks",
        description="Webhook deliveries per second to a local receiver, and nothing "
        "lost across a SIGKILL of the sender.",
    )
    parser.add_argument("--events", type=int, default=3000, metavar="N")
    parser.add_argument(
        "--kill-after",
        type=int,
        metavar="K",
        help="SIGKILL the sender after K distinct messages arrived, then start "
        "another (default N/3; 0: no kill)",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=2.0,
        help="WEBHOOK_TIMEOUT_S of the senders: their leases last twice it (2)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="WEBHOOK_CONCURRENCY"
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server on which a database bench_webhooks_<random> is "
        "made and dropped (default: SQLite in a temporary folder)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report")
    args = parser.parse_args(argv)
    kill_after = args.events // 3 if args.kill_after is None else args.kill_after
    options = Options(
        events=args.events,
        kill_after=min(kill_after, args.events),
        timeout_s=args.timeout_s,
        concurrency=args.concurrency,
        database_url=args.database_url,
    )
    try:
        report = asyncio.run(run(options))
    except BenchError as exc:
        print(f"bench.webhooks: {exc}", file=sys.stderr)
        return EXIT_ERROR
    mode: dict[str, object] = {
        "events": options.events,
        "kill_after": options.kill_after,
        "timeout_s": options.timeout_s,
        "concurrency": options.concurrency,
        "database": "postgresql" if options.database_url else "sqlite",
    }
    print(format_figures(report, mode), flush=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"mode": mode, **asdict(report)}, indent=2) + "\n"
        )
    problems = report.lost or report.bad_signatures
    return EXIT_PROBLEMS if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
