"""One bench run: server, interview, worker processes, progress, measurements."""

from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing
import queue
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

from bench.report import build_report, progress_line
from bench.server import (
    BenchError,
    OwnServer,
    clk_tck,
    create_interview,
    process_cpu_ticks,
    process_rss_kb,
    question_count,
    start_server,
    wait_healthy,
)
from bench.stats import cpu_percent, split_evenly
from bench.worker import DRAIN_S, Message, WorkerConfig, worker_entry

LOCAL_HOSTS = ("127.0.0.1", "localhost")
MAX_SOCKETS_PER_PROC = 10_000
RUNNING_P99_S = 5.0
SLACK_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOptions:
    sockets: int
    procs: int
    warmup_s: float = 10.0
    measure_s: float = 30.0
    tick_ms: int = 1000
    answers_per_s: float = 50.0
    connect_rate: float = 500.0
    connect_concurrency: int = 200
    reconnects: int = 200
    reconnect_rate: float = 20.0
    compression: str | None = None
    server_url: str | None = None
    server_pid: int | None = None
    jwt_secret: str | None = None


def check_local(url: str) -> None:
    """The bench only ever targets this machine."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in LOCAL_HOSTS:
        raise BenchError(f"--server-url must be ws://127.0.0.1:PORT/..., got {url!r}")


def run_once(options: RunOptions, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the bench once and return the report (see bench/README.md)."""
    if options.sockets / options.procs > MAX_SOCKETS_PER_PROC:
        raise BenchError(
            f"{options.sockets} sockets over {options.procs} processes is more than "
            f"{MAX_SOCKETS_PER_PROC} per process (file-descriptor limit): raise --procs"
        )
    server: OwnServer | None = None
    pid: int | None
    if options.server_url is None:
        print("starting the server...", file=out, flush=True)
        server = start_server(options.tick_ms)
        ws_url, secret, pid = server.ws_url, server.secret, server.pid
        prefix = "c"
    else:
        check_local(options.server_url)
        if not options.jwt_secret:
            raise BenchError("--server-url needs --jwt-secret (or JWT_SECRET)")
        ws_url, secret, pid = options.server_url, options.jwt_secret, options.server_pid
        # Candidates of earlier runs may still have attempts in progress.
        prefix = f"bench-{secrets.token_hex(3)}-c"
    exit_code: int | None = None
    try:
        report = _run(options, ws_url, secret, pid, prefix, out)
    except BaseException:
        if server is not None:
            print(f"server log (end):\n{server.log_tail()}", file=out)
        raise
    finally:
        if server is not None:
            exit_code = server.stop()
            server.cleanup()
    if server is not None:
        report["server"]["exit_code"] = exit_code
    return report


def _http_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    return f"http://{parts.netloc}"


def _run(
    options: RunOptions,
    ws_url: str,
    secret: str,
    pid: int | None,
    prefix: str,
    out: TextIO,
) -> dict[str, Any]:
    http_url = _http_url(ws_url)
    wait_healthy(http_url, None)
    users = [f"{prefix}{index}" for index in range(options.sockets)]
    ramp_s = options.sockets / options.connect_rate
    time_limit_s = math.ceil(
        max(600.0, 3 * ramp_s + options.warmup_s + options.measure_s + 300)
    )
    questions = question_count(
        options.sockets, options.answers_per_s, options.measure_s
    )
    print(
        f"creating the interview ({questions} questions of {time_limit_s} s) and "
        f"inviting {options.sockets} candidates...",
        file=out,
        flush=True,
    )
    interview_id = create_interview(
        http_url,
        secret,
        candidates=users,
        questions=questions,
        time_limit_s=time_limit_s,
    )
    rss_before = process_rss_kb(pid) if pid is not None else None
    monitor = _Monitor(options, pid, out)
    context = multiprocessing.get_context("spawn")
    results: Queue[Message] = context.Queue()
    inboxes: list[Queue[Message]] = []
    procs: list[BaseProcess] = []
    shares = split_evenly(options.sockets, options.procs)
    try:
        for worker, share in enumerate(shares):
            fraction = len(share) / max(1, options.sockets)
            config = WorkerConfig(
                worker=worker,
                ws_url=ws_url,
                secret=secret,
                interview_id=interview_id,
                users=users[share.start : share.stop],
                tick_ms=options.tick_ms,
                connect_rate=options.connect_rate / options.procs,
                connect_concurrency=max(
                    1, options.connect_concurrency // options.procs
                ),
                answers_per_s=options.answers_per_s * fraction,
                reconnects=math.ceil(
                    min(options.reconnects, options.sockets) * fraction
                ),
                reconnect_rate=options.reconnect_rate / options.procs,
                compression=options.compression,
            )
            inbox: Queue[Message] = context.Queue()
            proc = context.Process(
                target=worker_entry,
                args=(config, inbox, results),
                name=f"bench-worker-{worker}",
                daemon=True,
            )
            proc.start()
            inboxes.append(inbox)
            procs.append(proc)
        monitor.worker_pids = [proc.pid for proc in procs if proc.pid is not None]
        # Bounded even when the server attaches only ~10 sockets a second.
        connect_deadline = (
            time.monotonic() + 3 * ramp_s + options.sockets / 10 + SLACK_S
        )
        monitor.pump(
            results, lambda: len(monitor.connected) == len(procs), connect_deadline
        )
        connected_at = time.time()
        start_ms = int((connected_at + options.warmup_s) * 1000)
        end_ms = start_ms + int(options.measure_s * 1000)
        monitor.window = (start_ms, end_ms)
        for inbox in inboxes:
            inbox.put(("schedule", start_ms, end_ms))
        reconnect_s = min(options.reconnects, options.sockets) / options.reconnect_rate
        results_deadline = (
            time.monotonic()
            + options.warmup_s
            + options.measure_s
            + DRAIN_S
            + 2 * reconnect_s
            + SLACK_S
        )
        monitor.pump(
            results, lambda: len(monitor.results) == len(procs), results_deadline
        )
    finally:
        for inbox in inboxes:
            with contextlib.suppress(Exception):
                inbox.put(("stop",))
        _end_workers(procs)
    return build_report(
        options,
        results=[monitor.results[worker] for worker in sorted(monitor.results)],
        connected=monitor.connected,
        window=(start_ms, end_ms),
        connect_s=connected_at - monitor.started,
        server={
            "pid": pid,
            "cpu_percent": monitor.server_cpu,
            "rss_before_kb": rss_before,
            "rss_after_kb": monitor.server_rss_after,
        },
        generator_cpu=monitor.worker_cpu,
    )


class _Monitor:
    """Reads the workers' messages, prints the progress line once a second, and takes
    the /proc readings at the edges of the measuring window."""

    def __init__(self, options: RunOptions, pid: int | None, out: TextIO) -> None:
        self.options = options
        self.pid = pid
        self.out = out
        self.started = time.time()
        self.worker_pids: list[int] = []
        self.window: tuple[int, int] | None = None
        self.connected: dict[int, int] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.progress: dict[int, dict[str, Any]] = {}
        self.recent: collections.deque[tuple[float, list[float]]] = collections.deque()
        self.server_cpu: float | None = None
        self.server_rss_after: int | None = None
        self.worker_cpu: list[float] = []
        self._cpu_start: tuple[float, int | None, list[int]] | None = None
        self._last_cpu: tuple[float, int] | None = None
        self._next_line = time.monotonic() + 1.0

    def pump(
        self, results: Queue[Message], done: Callable[[], bool], deadline: float
    ) -> None:
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise BenchError(self._timeout_message())
            self._edges()
            try:
                message = results.get(
                    timeout=max(0.01, min(0.2, self._next_line - now))
                )
            except queue.Empty:
                message = None
            if message is not None:
                self._handle(message)
            if time.monotonic() >= self._next_line:
                self._next_line += 1.0
                print(self._line(), file=self.out, flush=True)
        self._edges()

    def _timeout_message(self) -> str:
        waiting = "connecting" if self.window is None else "results"
        return f"timed out waiting for the workers ({waiting}); last: {self.progress}"

    def _handle(self, message: Message) -> None:
        kind, worker = message[0], int(message[1])
        if kind == "crash":
            raise BenchError(f"worker {worker} crashed:\n{message[2]}")
        if kind == "connected":
            self.connected[worker] = int(message[2])
        elif kind == "result":
            self.results[worker] = message[2]
        elif kind == "progress":
            self.progress[worker] = message[2]
            self.recent.append((time.monotonic(), message[2]["recent"]))

    def _edges(self) -> None:
        """CPU readings at the window's start and end; RSS at its end."""
        if self.window is None:
            return
        now_ms = time.time() * 1000
        start_ms, end_ms = self.window
        if self._cpu_start is None and now_ms >= start_ms:
            self._cpu_start = (
                time.monotonic(),
                self._server_ticks(),
                self._worker_ticks(),
            )
        elif (
            self._cpu_start is not None and self.server_cpu is None and now_ms >= end_ms
        ):
            began, server_before, workers_before = self._cpu_start
            wall = time.monotonic() - began
            server_after = self._server_ticks()
            if server_before is not None and server_after is not None:
                self.server_cpu = cpu_percent(
                    server_before, server_after, clk_tck(), wall
                )
                self.server_rss_after = _read(process_rss_kb, self.pid)
            else:
                self.server_cpu = math.nan
            self.worker_cpu = [
                cpu_percent(before, after, clk_tck(), wall)
                for before, after in zip(
                    workers_before, self._worker_ticks(), strict=True
                )
            ]

    def _server_ticks(self) -> int | None:
        return _read(process_cpu_ticks, self.pid)

    def _worker_ticks(self) -> list[int]:
        return [_read(process_cpu_ticks, pid) or 0 for pid in self.worker_pids]

    def _line(self) -> str:
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - RUNNING_P99_S:
            self.recent.popleft()
        samples = [late for _, batch in self.recent for late in batch]
        return progress_line(
            elapsed_s=time.time() - self.started,
            phase=self._phase(),
            sockets=self.options.sockets,
            progress=list(self.progress.values()),
            recent=samples,
            server_cpu=self._server_cpu_now(),
        )

    def _phase(self) -> str:
        if self.window is None:
            return "connecting"
        now_ms = time.time() * 1000
        if now_ms < self.window[0]:
            return "warmup"
        if now_ms < self.window[1]:
            return "measure"
        phases = sorted({str(p["phase"]) for p in self.progress.values()})
        return "/".join(phases) or "drain"

    def _server_cpu_now(self) -> float | None:
        ticks = self._server_ticks()
        if ticks is None:
            return None
        now = time.monotonic()
        last, self._last_cpu = self._last_cpu, (now, ticks)
        if last is None or now <= last[0]:
            return None
        return cpu_percent(last[1], ticks, clk_tck(), now - last[0])


def _read(reader: Callable[[int], T], pid: int | None) -> T | None:
    if pid is None:
        return None
    try:
        return reader(pid)
    except (OSError, ValueError):
        return None


def _end_workers(procs: list[BaseProcess]) -> None:
    deadline = time.monotonic() + 15.0
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
