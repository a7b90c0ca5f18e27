"""One bench run: server, interview, worker processes, progress, measurements."""

from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing
import os
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

from bench.instances import (
    InstanceFigures,
    Mode,
    server_figures,
    sockets_per_instance,
)
from bench.options import RunOptions
from bench.report import build_report, progress_line
from bench.server import (
    BenchError,
    OwnServers,
    clk_tck,
    create_interview,
    machine_cpu_ticks,
    named_cpu_ticks,
    process_cpu_ticks,
    process_rss_kb,
    question_count,
    start_servers,
    wait_healthy,
)
from bench.stats import cpu_percent, split_evenly
from bench.worker import DRAIN_S, Message, WorkerConfig, worker_entry

MAX_SOCKETS_PER_PROC = 10_000
RUNNING_P99_S = 5.0
SLACK_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """The server instances of one run: URLs, pids (maybe none), the secret."""

    mode: Mode
    ws_urls: list[str]
    pids: list[int | None]
    secret: str


def run_once(options: RunOptions, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the bench once and return the report (see bench/README.md)."""
    mode = options.mode()
    if options.sockets / options.procs > MAX_SOCKETS_PER_PROC:
        raise BenchError(
            f"{options.sockets} sockets over {options.procs} processes is more than "
            f"{MAX_SOCKETS_PER_PROC} per process (file-descriptor limit): raise --procs"
        )
    own: OwnServers | None = None
    if mode.own:
        print(f"starting the servers ({mode.label})...", file=out, flush=True)
        own = start_servers(
            options.tick_ms,
            instances=mode.instances,
            database_url=options.database_url,
            redis_url=options.redis_url,
        )
        if own.database is not None:
            print(
                f"database {own.database}, redis prefix {own.redis_prefix}",
                file=out,
                flush=True,
            )
        target = Target(mode, own.ws_urls, list(own.pids), own.secret)
        prefix = "c"
    else:
        assert options.jwt_secret is not None  # resolve_mode checked it
        pids: list[int | None] = list(options.server_pids) or [None] * mode.instances
        target = Target(mode, list(options.server_urls), pids, options.jwt_secret)
        # Candidates of earlier runs may still have attempts in progress.
        prefix = f"bench-{secrets.token_hex(3)}-c"
    exit_codes: list[int | None] = []
    warnings: dict[str, object] = {}
    try:
        report = _run(options, target, prefix, out)
    except BaseException:
        if own is not None:
            print(own.log_tails(), file=out)
        raise
    finally:
        if own is not None:
            exit_codes = own.stop()
            with contextlib.suppress(OSError):
                warnings = own.log_warnings()
            own.cleanup()
    if own is not None:
        report["server"]["exit_codes"] = exit_codes
        report["server"]["log_warnings"] = warnings
    return report


def _http_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    return f"http://{parts.netloc}"


def _run(
    options: RunOptions, target: Target, prefix: str, out: TextIO
) -> dict[str, Any]:
    for ws_url in target.ws_urls:
        wait_healthy(_http_url(ws_url), None)
    http_url = _http_url(target.ws_urls[0])
    secret = target.secret
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
    rss_before = [_read(process_rss_kb, pid) for pid in target.pids]
    monitor = _Monitor(options, target.pids, out)
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
                ws_urls=tuple(target.ws_urls),
                first_index=share.start,
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
    opened = sum(monitor.connected.values())
    assigned = sockets_per_instance(options.sockets, len(target.ws_urls))
    instances = [
        InstanceFigures(
            url=url,
            pid=pid,
            sockets=count,
            cpu_percent=cpu,
            rss_before_kb=before,
            rss_after_kb=after,
        )
        for url, pid, count, cpu, before, after in zip(
            target.ws_urls,
            target.pids,
            assigned,
            monitor.server_cpu or [None] * len(target.pids),
            rss_before,
            monitor.server_rss_after or [None] * len(target.pids),
            strict=True,
        )
    ]
    return build_report(
        options,
        mode=target.mode,
        results=[monitor.results[worker] for worker in sorted(monitor.results)],
        connected=monitor.connected,
        window=(start_ms, end_ms),
        connect_s=connected_at - monitor.started,
        server=server_figures(instances, opened),
        machine_cpu=monitor.machine_cpu,
        backing_cpu=monitor.backing_cpu,
        generator_cpu=monitor.worker_cpu,
    )


@dataclass(frozen=True, slots=True)
class _CpuStart:
    """The CPU readings at the window's start."""

    began: float  # monotonic
    servers: list[int | None]
    machine: tuple[int, int] | None
    backing: dict[str, int]
    workers: list[int]


class _Monitor:
    """Reads the workers' messages, prints the progress line once a second, and takes
    the /proc readings at the edges of the measuring window."""

    def __init__(
        self, options: RunOptions, pids: list[int | None], out: TextIO
    ) -> None:
        self.options = options
        self.pids = pids
        self.out = out
        self.started = time.time()
        self.worker_pids: list[int] = []
        self.window: tuple[int, int] | None = None
        self.connected: dict[int, int] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.progress: dict[int, dict[str, Any]] = {}
        self.recent: collections.deque[tuple[float, list[float]]] = collections.deque()
        # Per server instance, set at the window's end.
        self.server_cpu: list[float | None] | None = None
        self.server_rss_after: list[int | None] | None = None
        self.machine_cpu: float | None = None
        self.backing_cpu: dict[str, float] = {}
        self.worker_cpu: list[float] = []
        self._cpu_start: _CpuStart | None = None
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
            self._cpu_start = _CpuStart(
                time.monotonic(),
                self._server_ticks(),
                _read_machine(),
                named_cpu_ticks(),
                self._worker_ticks(),
            )
        elif (
            self._cpu_start is not None and self.server_cpu is None and now_ms >= end_ms
        ):
            start = self._cpu_start
            wall = time.monotonic() - start.began
            server_before, machine_before = start.servers, start.machine
            workers_before = start.workers
            self.backing_cpu = {
                # At least 0: a process that exited took its ticks with it.
                name: max(
                    0.0,
                    cpu_percent(start.backing.get(name, 0), ticks, clk_tck(), wall),
                )
                for name, ticks in named_cpu_ticks().items()
            }
            self.server_cpu = [
                None
                if before is None or after is None
                else cpu_percent(before, after, clk_tck(), wall)
                for before, after in zip(
                    server_before, self._server_ticks(), strict=True
                )
            ]
            self.server_rss_after = [_read(process_rss_kb, pid) for pid in self.pids]
            machine_after = _read_machine()
            if machine_before is not None and machine_after is not None:
                busy = machine_after[0] - machine_before[0]
                total = machine_after[1] - machine_before[1]
                cores = os.cpu_count() or 1
                self.machine_cpu = 100 * busy / total * cores if total else None
            self.worker_cpu = [
                cpu_percent(before, after, clk_tck(), wall)
                for before, after in zip(
                    workers_before, self._worker_ticks(), strict=True
                )
            ]

    def _server_ticks(self) -> list[int | None]:
        return [_read(process_cpu_ticks, pid) for pid in self.pids]

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
        """All instances together over the last second."""
        readings = self._server_ticks()
        if not readings or any(ticks is None for ticks in readings):
            return None
        ticks = sum(tick for tick in readings if tick is not None)
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


def _read_machine() -> tuple[int, int] | None:
    try:
        return machine_cpu_ticks()
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
