"""A load-generator process: its share of the sockets on one event loop.

The parent starts each worker with a :class:`WorkerConfig`, sends it the measuring
window once every worker has connected, and collects ``progress`` (every second) and
one ``result`` from the shared queue. Messages are plain tuples and dictionaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import time
import traceback
from array import array
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from bench.client import AttachError, Client, epoch_ms, failure_reason
from bench.instances import instance_of, reconnect_instance
from bench.server import ANSWER_TEXT
from bench.stats import expected_ticks, intended_tick

DRAIN_S = 2.0
ACK_TIMEOUT_S = 10.0
LAG_PROBE_S = 0.05
SCHEDULE_TIMEOUT_S = 3600.0

Message = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker: int
    ws_urls: tuple[str, ...]  # the server instances, shared round robin
    first_index: int  # the index of this worker's first socket over all workers
    secret: str
    interview_id: str
    users: list[str]
    tick_ms: int
    connect_rate: float  # connects started per second by this worker
    connect_concurrency: int
    answers_per_s: float  # by this worker, during the window
    reconnects: int
    reconnect_rate: float
    compression: str | None


def worker_entry(
    config: WorkerConfig, inbox: Queue[Message], out: Queue[Message]
) -> None:
    """Process target (spawn): run the worker, report a crash instead of dying mute."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in requirements/dev.txt
        runner = asyncio.run
    try:
        runner(Worker(config, inbox, out).run())
    except BaseException:
        out.put(("crash", config.worker, traceback.format_exc()))


class Worker:
    def __init__(
        self, config: WorkerConfig, inbox: Queue[Message], out: Queue[Message]
    ) -> None:
        self.config = config
        self.inbox = inbox
        self.out = out
        self.tick_ms = config.tick_ms
        self.clients = [Client(user, config.secret) for user in config.users]
        instances = len(config.ws_urls)
        for offset, client in enumerate(self.clients):
            client.instance = instance_of(config.first_index + offset, instances)
        self.phase = "connecting"
        self.window: tuple[int, int] | None = None
        self.recording = False
        self.open = 0
        self.ticks_total = 0
        self.recent: list[float] = []
        self.client_late: array[float] = array("d")
        self.server_late: array[float] = array("d")
        self.ticks_received = 0
        self.ticks_expected = 0
        self.ticks_duplicate = 0
        self.ticks_stale = 0
        self.setup_ms: list[float] = []
        self.setup_failures: dict[str, int] = {}
        self.answer_ms: list[float] = []
        self.answers_sent = 0
        self.answer_status: dict[str, int] = {}
        self.answer_errors: dict[str, int] = {}
        self.reconnect_ms: list[float] = []
        self.reconnect_failures: dict[str, int] = {}
        self.reconnect_takeovers = 0
        self.close_codes: dict[str, int] = {}
        self.error_codes: dict[str, int] = {}
        self.frames_other: dict[str, int] = {}
        self.loop_lag_ms: list[float] = []
        self.hello_tick_ms: int | None = None

    # -- the run ------------------------------------------------------------------

    async def run(self) -> None:
        progress = asyncio.create_task(self._progress())
        await self._connect_all()
        self.phase = "connected"
        self.out.put(("connected", self.config.worker, self.open))
        loop = asyncio.get_running_loop()
        message = await loop.run_in_executor(None, self._schedule)
        if message[0] == "schedule":
            await self._measure(int(message[1]), int(message[2]))
            self.phase = "reconnect"
            await self._reconnect_sample()
        self.phase = "closing"
        await asyncio.gather(*(client.close() for client in self.clients))
        progress.cancel()
        self.out.put(("result", self.config.worker, self._result()))

    def _schedule(self) -> Message:
        try:
            message: Message = self.inbox.get(timeout=SCHEDULE_TIMEOUT_S)
        except queue.Empty:
            return ("stop",)
        return message

    async def _connect_all(self) -> None:
        limit = asyncio.Semaphore(self.config.connect_concurrency)
        loop = asyncio.get_running_loop()
        interval = 1 / self.config.connect_rate
        next_at = loop.time()
        tasks: list[asyncio.Task[None]] = []
        for client in self.clients:
            await limit.acquire()
            tasks.append(asyncio.create_task(self._connect(client, limit)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        await asyncio.gather(*tasks)

    async def _connect(self, client: Client, limit: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        try:
            await self._attach(client, resume=False)
        except Exception as exc:
            reason = failure_reason(exc)
            self.setup_failures[reason] = self.setup_failures.get(reason, 0) + 1
        else:
            self.setup_ms.append((time.perf_counter() - started) * 1000)
        finally:
            limit.release()

    async def _attach(self, client: Client, *, resume: bool) -> bool:
        _, took_over = await client.attach(
            self.config.ws_urls[client.instance],
            self.config.interview_id,
            resume=resume,
            compression=self.config.compression,
        )
        self.open += 1
        if self.hello_tick_ms is None and client.tick_interval_ms is not None:
            # The server's interval is the truth about when ticks are due.
            self.hello_tick_ms = self.tick_ms = client.tick_interval_ms
        client.reader = asyncio.create_task(self._read(client))
        return took_over

    async def _measure(self, start_ms: int, end_ms: int) -> None:
        self.window = (start_ms, end_ms)
        self.phase = "warmup"
        self.recording = True
        await _sleep_until(start_ms)
        self.phase = "measure"
        tasks = [
            asyncio.create_task(self._answer(end_ms)),
            asyncio.create_task(self._probe_lag(end_ms)),
        ]
        await _sleep_until(end_ms)
        self.phase = "drain"
        await asyncio.sleep(DRAIN_S)
        self.recording = False
        for task in tasks:
            task.cancel()
        now = int(epoch_ms())
        for client in self.clients:
            if client.ws is not None and client.deadline is not None:
                self._close_segment(client, now)

    # -- frames -------------------------------------------------------------------

    async def _read(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        try:
            while True:
                message = await ws.recv()
                self._on_frame(client, json.loads(message), epoch_ms())
        except Exception as exc:
            self.open -= 1
            if client.closing:
                return
            code = failure_reason(exc)
            self.close_codes[code] = self.close_codes.get(code, 0) + 1
            if client.deadline is not None:
                self._close_segment(client, int(epoch_ms()))
            client.deadline = None
            client.ws = None

    def _on_frame(self, client: Client, frame: dict[str, Any], received: float) -> None:
        kind = frame.get("type")
        if kind == "tick":
            self._on_tick(client, frame, received)
        elif kind == "state":
            server_time = int(frame["server_time"])
            # A tick of the previous question due after its answer arrived (sent
            # while the answer was being committed) was not expected of it.
            stale = sum(1 for due in client.in_flight_ticks if due >= server_time)
            self.ticks_received -= stale
            self.ticks_stale += stale
            if client.deadline is not None:
                self._close_segment(client, server_time)
            client.on_state(frame)
            # No tick of the new question is expected before its state was sent:
            # the server keeps ticking the old one while the answer is committed.
            client.segment_from = max(client.segment_from, int(received))
        elif kind == "answer_ack":
            if frame.get("ref") == client.sent_ref and client.sent_ref is not None:
                self.answer_ms.append((time.perf_counter() - client.sent_at) * 1000)
                status = str(frame.get("status"))
                self.answer_status[status] = self.answer_status.get(status, 0) + 1
                client.sent_ref = None
        elif kind == "error":
            code = str(frame.get("code"))
            if client.answering and frame.get("ref") == client.sent_ref:
                self.answer_errors[code] = self.answer_errors.get(code, 0) + 1
                client.answering = False
                client.sent_ref = None
            else:
                self.error_codes[code] = self.error_codes.get(code, 0) + 1
        else:
            label = str(kind)
            self.frames_other[label] = self.frames_other.get(label, 0) + 1

    def _on_tick(self, client: Client, frame: dict[str, Any], received: float) -> None:
        self.ticks_total += 1
        deadline = int(frame["deadline"])
        intended = intended_tick(deadline, int(frame["remaining_ms"]), self.tick_ms)
        if client.last_tick == (deadline, intended):
            self.ticks_duplicate += 1
            return
        client.last_tick = (deadline, intended)
        late = received - intended
        self.recent.append(late)
        if self.recording and self.window is not None:
            start, end = self.window
            if start <= intended < end:
                self.ticks_received += 1
                if client.answering:
                    client.in_flight_ticks.append(intended)
                self.client_late.append(late)
                self.server_late.append(float(int(frame["server_time"]) - intended))

    def _close_segment(self, client: Client, until: int) -> None:
        """Count the ticks due while ``client`` was on its current question."""
        if self.window is None or client.deadline is None:
            return
        self.ticks_expected += expected_ticks(
            client.deadline,
            self.tick_ms,
            attached_from=client.segment_from,
            attached_until=until,
            window=self.window,
        )
        client.segment_from = until

    # -- answers, lag, reconnects -------------------------------------------------

    async def _answer(self, end_ms: int) -> None:
        if self.config.answers_per_s <= 0 or not self.clients:
            return
        loop = asyncio.get_running_loop()
        interval = 1 / self.config.answers_per_s
        rotation = itertools.cycle(self.clients)
        next_at = loop.time()
        refs = itertools.count()
        while epoch_ms() < end_ms:
            for _ in range(len(self.clients)):
                client = next(rotation)
                if self._can_answer(client):
                    await self._send_answer(client, f"{client.user}-{next(refs)}")
                    break
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _can_answer(self, client: Client) -> bool:
        if not client.attached or client.answering:
            return False
        # Never the last question: a completed interview closes the socket.
        return client.question_index < client.question_count - 1

    async def _send_answer(self, client: Client, ref: str) -> None:
        ws = client.ws
        assert ws is not None
        client.answering = True
        client.sent_ref = ref
        client.sent_at = time.perf_counter()
        frame = {
            "type": "answer",
            "question_index": client.question_index,
            "answer": ANSWER_TEXT,
            "ref": ref,
        }
        self.answers_sent += 1
        with contextlib.suppress(Exception):  # the reader records the close
            await ws.send(json.dumps(frame))

    async def _probe_lag(self, end_ms: int) -> None:
        loop = asyncio.get_running_loop()
        while epoch_ms() < end_ms:
            before = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag_ms.append((loop.time() - before - LAG_PROBE_S) * 1000)

    async def _reconnect_sample(self) -> None:
        sample = [client for client in self.clients if client.attached]
        sample = sample[: self.config.reconnects]
        if not sample:
            return
        interval = 1 / self.config.reconnect_rate
        tasks = []
        for client in sample:
            tasks.append(asyncio.create_task(self._reconnect(client)))
            await asyncio.sleep(interval)
        await asyncio.gather(*tasks)

    async def _reconnect(self, client: Client) -> None:
        await client.close()
        # With several instances the candidate comes back on another one.
        client.instance = reconnect_instance(client.instance, len(self.config.ws_urls))
        started = time.perf_counter()
        try:
            took_over = await self._attach(client, resume=True)
        except Exception as exc:
            reason = failure_reason(exc)
            self.reconnect_failures[reason] = self.reconnect_failures.get(reason, 0) + 1
            return
        self.reconnect_ms.append((time.perf_counter() - started) * 1000)
        self.reconnect_takeovers += took_over

    # -- reporting ----------------------------------------------------------------

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            recent, self.recent = self.recent, []
            self.out.put(
                (
                    "progress",
                    self.config.worker,
                    {
                        "phase": self.phase,
                        "open": self.open,
                        "ticks": self.ticks_total,
                        "recent": recent,
                        "answers": len(self.answer_ms),
                        "reconnects": len(self.reconnect_ms),
                    },
                )
            )

    def _result(self) -> dict[str, Any]:
        unacked = sum(1 for client in self.clients if client.sent_ref is not None)
        return {
            "sockets": len(self.clients),
            "setup_ms": self.setup_ms,
            "setup_failures": self.setup_failures,
            "client_late": self.client_late.tolist(),
            "server_late": self.server_late.tolist(),
            "ticks_received": self.ticks_received,
            "ticks_expected": self.ticks_expected,
            "ticks_duplicate": self.ticks_duplicate,
            "ticks_stale": self.ticks_stale,
            "answer_ms": self.answer_ms,
            "answers_sent": self.answers_sent,
            "answers_unacked": unacked,
            "answer_status": self.answer_status,
            "answer_errors": self.answer_errors,
            "reconnect_ms": self.reconnect_ms,
            "reconnect_failures": self.reconnect_failures,
            "reconnect_takeovers": self.reconnect_takeovers,
            "close_codes": self.close_codes,
            "error_codes": self.error_codes,
            "frames_other": self.frames_other,
            "loop_lag_ms": self.loop_lag_ms,
            "hello_tick_ms": self.hello_tick_ms,
        }


async def _sleep_until(epoch_ms_at: float) -> None:
    await asyncio.sleep(max(0.0, (epoch_ms_at - epoch_ms()) / 1000))


__all__ = ["AttachError", "WorkerConfig", "worker_entry"]
