"""``python -m bench.storm``: a restart storm. N candidates attached, one server
instance restarted (gracefully with SIGTERM, or with SIGKILL), every displaced
candidate reconnecting with jittered backoff and resuming; how long until all are
attached again, and what the candidates saw on the way (bench/README.md).

Exit status: 0 the targets of issue 13 are met, 1 the run found problems, 2 it could
not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import queue
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any, TextIO

from bench.instances import Mode, resolve_mode
from bench.run import _end_workers
from bench.server import (
    HOST,
    BenchError,
    OwnServer,
    OwnServers,
    create_interview,
    spawn,
    start_servers,
)
from bench.stats import merge_counts, split_evenly
from bench.storm_stats import (
    GRACEFUL,
    KILL,
    RESTART_KINDS,
    Backoff,
    Timeline,
    storm_figures,
    storm_problems,
)
from bench.storm_worker import Message, StormConfig, storm_entry

SOCKETS_PER_PROC = 10_000
EXIT_TIMEOUT_S = 30.0
ACCEPT_TIMEOUT_S = 30.0
TIME_LIMIT_S = 3600


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--sockets", type=int, required=True, help="candidates attached")
    add("--procs", type=int, help="client processes (default one per 10,000)")
    add("--instances", type=int, help="server instances (default 1)")
    add("--database-url", help="production mode: a PostgreSQL server URL")
    add("--redis-url", help="production mode: the Redis the instances share")
    add("--restart", choices=RESTART_KINDS, default=GRACEFUL, help="SIGTERM or -9")
    add("--backoff-base-ms", type=float, default=500.0, help="first ceiling")
    add("--backoff-cap-ms", type=float, default=10_000.0, help="largest ceiling")
    add("--connect-rate", type=float, default=200.0, help="first connects per s")
    add("--connect-concurrency", type=int, default=200)
    add("--settle", type=float, default=2.0, help="seconds before the restart")
    add("--timeout", type=float, default=300.0, help="seconds to wait for all back")
    add("--tick-ms", type=int, default=1000, help="TICK_INTERVAL_MS of the servers")
    add("--seed", type=int, help="seed of the backoff's jitter (default random)")
    add("--json", metavar="FILE", help="write the report there")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        mode = resolve_mode(
            server_urls=[],
            server_pids=[],
            instances=args.instances,
            database_url=args.database_url,
            redis_url=args.redis_url,
            jwt_secret=None,
        )
        if args.sockets < 1:
            raise BenchError("--sockets must be at least 1")
        report = run_storm(args, mode, out)
    except BenchError as exc:
        print(f"bench.storm: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report["restart"], indent=2), file=out)
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}", file=out)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return 1 if report["problems"] else 0


def run_storm(args: argparse.Namespace, mode: Mode, out: TextIO) -> dict[str, Any]:
    own = start_servers(
        args.tick_ms,
        instances=mode.instances,
        database_url=args.database_url,
        redis_url=args.redis_url,
    )
    retired: list[OwnServer] = []
    try:
        report = _storm(args, mode, own, retired, out)
    finally:
        exits = own.stop()
        warnings = _log_warnings(own, retired)
        own.cleanup()
    report["server_exit"] = exits
    report["server_log"] = warnings
    return report


def _storm(
    args: argparse.Namespace,
    mode: Mode,
    own: OwnServers,
    retired: list[OwnServer],
    out: TextIO,
) -> dict[str, Any]:
    users = [f"c{index}" for index in range(args.sockets)]
    http_url = own.servers[0].http_url
    print(f"inviting {args.sockets} candidates...", file=out, flush=True)
    interview_id = create_interview(
        http_url, own.secret, candidates=users, questions=3, time_limit_s=TIME_LIMIT_S
    )
    procs_count = args.procs or math.ceil(args.sockets / SOCKETS_PER_PROC)
    context = multiprocessing.get_context("spawn")
    results: Queue[Message] = context.Queue()
    inboxes: list[Queue[Message]] = []
    procs: list[BaseProcess] = []
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    backoff = Backoff(args.backoff_base_ms, args.backoff_cap_ms)
    pump = _Pump(results, out)
    try:
        for worker, share in enumerate(split_evenly(args.sockets, procs_count)):
            config = StormConfig(
                worker=worker,
                ws_urls=tuple(own.ws_urls),
                first_index=share.start,
                secret=own.secret,
                interview_id=interview_id,
                users=users[share.start : share.stop],
                connect_rate=args.connect_rate / procs_count,
                connect_concurrency=max(1, args.connect_concurrency // procs_count),
                backoff=backoff,
                restarted=0,
                seed=seed + worker,
            )
            inbox: Queue[Message] = context.Queue()
            proc = context.Process(
                target=storm_entry, args=(config, inbox, results), daemon=True
            )
            proc.start()
            inboxes.append(inbox)
            procs.append(proc)
        started = time.monotonic()
        attach_deadline = started + args.sockets / 10 + 60
        pump.until(lambda: len(pump.attached) == procs_count, attach_deadline)
        attach_s = time.monotonic() - started
        attached = sum(count for count, _ in pump.attached.values())
        displaced = sum(on_restarted for _, on_restarted in pump.attached.values())
        print(f"{attached} attached in {attach_s:.1f} s", file=out, flush=True)
        time.sleep(args.settle)
        timeline = _restart(own, 0, args.restart, retired, out)

        def all_back() -> bool:
            progress = pump.progress.values()
            closed = sum(item["closed"] for item in progress)
            back = sum(item["attached"] for item in progress)
            return closed >= displaced and back == attached

        pump.until(all_back, time.monotonic() + args.timeout, quiet=False)
    finally:
        for inbox in inboxes:
            with contextlib.suppress(Exception):
                inbox.put(("stop",))
        with contextlib.suppress(BenchError):
            pump.until(lambda: len(pump.results) == len(procs), time.monotonic() + 60)
        _end_workers(procs)
    worker_results = [pump.results[worker] for worker in sorted(pump.results)]
    figures = storm_figures(
        kind=args.restart,
        timeline=timeline,
        resumes=[tuple(row) for result in worker_results for row in result["resumes"]],
        close_codes=[result["close_codes"] for result in worker_results],
        refusals=[result["refusals"] for result in worker_results],
        displaced=displaced,
        not_back=sum(result["not_back"] for result in worker_results),
    )
    figures["attached_before"] = attached
    figures["attach_s"] = round(attach_s, 1)
    figures["first_failures"] = merge_counts(
        result["first_failures"] for result in worker_results
    )
    figures["closes_by_instance"] = merge_counts(
        result["closes_by_instance"] for result in worker_results
    )
    figures["old_exit"] = retired[-1].process.returncode if retired else None
    return {
        "mode": mode.as_dict(),
        "sockets": args.sockets,
        "procs": procs_count,
        "backoff_ms": {"base": backoff.base_ms, "cap": backoff.cap_ms},
        "seed": seed,
        "restart": figures,
        "problems": storm_problems(figures),
    }


def _restart(
    own: OwnServers, index: int, kind: str, retired: list[OwnServer], out: TextIO
) -> Timeline:
    """Stop instance ``index`` (SIGTERM and wait, or SIGKILL), then serve the same
    port again with the same environment; when each step happened."""
    old = own.servers[index]
    assert own.env is not None
    print(f"restart ({kind}) of instance {index}...", file=out, flush=True)
    signalled_at = time.time() * 1000
    old.process.send_signal(signal.SIGKILL if kind == KILL else signal.SIGTERM)
    try:
        old.process.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        old.process.kill()
        old.process.wait()
    exited_at = time.time() * 1000
    old.stop()
    retired.append(old)
    log_path = old.log_path.with_name(f"{old.log_path.stem}-{len(retired)}.log")
    new = spawn(own.env, log_path, old.port)
    own.servers[index] = new
    accepting_at = _wait_accepting(new) * 1000
    print(
        f"old process exited with {old.process.returncode} after "
        f"{(exited_at - signalled_at) / 1000:.1f} s; new one accepting "
        f"{(accepting_at - exited_at) / 1000:.1f} s later",
        file=out,
        flush=True,
    )
    return Timeline(signalled_at, exited_at, accepting_at)


def _wait_accepting(server: OwnServer) -> float:
    """When the new process first accepted a TCP connection (epoch seconds)."""
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"the new server exited:\n{server.log_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=1.0):
                return time.time()
        except OSError:
            time.sleep(0.01)
    raise BenchError(f"the new server did not accept in time:\n{server.log_tail()}")


def _log_warnings(own: OwnServers, retired: list[OwnServer]) -> dict[str, object]:
    everyone = OwnServers([*retired, *own.servers], own.secret, own.directory)
    return everyone.log_warnings()


class _Pump:
    """Reads the workers' messages; one progress line a second."""

    def __init__(self, results: Queue[Message], out: TextIO) -> None:
        self.queue = results
        self.out = out
        self.attached: dict[int, tuple[int, int]] = {}
        self.progress: dict[int, dict[str, int]] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.next_line = self.started + 1.0

    def until(
        self, done: Callable[[], bool], deadline: float, *, quiet: bool = True
    ) -> None:
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"timed out; last progress: {self.progress}")
            try:
                message = self.queue.get(timeout=0.1)
            except queue.Empty:
                message = None
            if message is not None:
                self._handle(message)
            if not quiet and time.monotonic() >= self.next_line:
                self.next_line = time.monotonic() + 1.0
                print(self._line(), file=self.out, flush=True)

    def _handle(self, message: Message) -> None:
        kind, worker = message[0], int(message[1])
        if kind == "crash":
            raise BenchError(f"worker {worker} crashed:\n{message[2]}")
        if kind == "attached":
            self.attached[worker] = (int(message[2]), int(message[3]))
        elif kind == "progress":
            self.progress[worker] = message[2]
        elif kind == "result":
            self.results[worker] = message[2]

    def _line(self) -> str:
        total = merge_counts(self.progress.values())
        elapsed = time.monotonic() - self.started
        return (
            f"{elapsed:6.1f}s attached {total.get('attached', 0)} "
            f"down {total.get('down', 0)} closed {total.get('closed', 0)} "
            f"resumed {total.get('resumed', 0)} refusals {total.get('refusals', 0)}"
        )


if __name__ == "__main__":
    sys.exit(main())
