"""``python -m bench.monitor``: how late the recruiter monitor socket tells of answers,
and how fast a monitor coming back with ``since`` catches up (bench/README.md).

N candidates answer at a rate while M monitors watch their interview; each monitor's
``event{kind:"answer_submitted"}`` is timed from the candidate's ``answer_ack`` (sent
once the answer's transaction committed). Then one monitor leaves, K events happen,
and it subscribes again with the last cursor it saw: the time to its snapshot and to
the last replayed event, and whether the replay is exact.

Exit status: 0 a clean run, 1 it ran but found problems (``PROBLEM`` lines), 2 it could
not run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.client import Client, epoch_ms, failure_reason
from bench.instances import Mode
from bench.monitor_stats import (
    Key,
    Logged,
    build_parser,
    enough_events,
    latency_figures,
    mode_of,
    order_of,
    placement,
    questions_needed,
    replay_problems,
    run_problems,
)
from bench.server import (
    ANSWER_TEXT,
    BENCH_ORG,
    REPO,
    BenchError,
    OwnServer,
    OwnServers,
    clk_tck,
    create_interview,
    machine_cpu_ticks,
    named_cpu_ticks,
    process_cpu_ticks,
    start_servers,
)
from bench.stats import cpu_percent, summarize
from protocol.messages import TICK_PREFIX
from server.auth import issue_token

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
TIME_LIMIT_S = 3600
OPEN_TIMEOUT_S = 30.0
FRAME_TIMEOUT_S = 30.0
ACK_TIMEOUT_S = 10.0
QUIET_S = 1.0
"""The log counts as settled once every answer is graded and no event came for this
long."""
FILL_TIMEOUT_S = 600.0
REPLAY_TIMEOUT_S = 120.0
LAG_PROBE_S = 0.05
TOKEN_TTL_S = 6 * 3600

LIVE = "live"
FILL = "fill"


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        mode = mode_of(args)
        questions = questions_needed(
            args.candidates, args.answers_per_s * args.measure, args.missed
        )
        report = run(args, mode, questions, out)
    except BenchError as exc:
        print(f"bench.monitor: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bench.monitor: interrupted", file=sys.stderr)
        return EXIT_ERROR
    print(format_report(report), file=out, flush=True)
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}", file=out)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return EXIT_PROBLEMS if report["problems"] else EXIT_OK


def run(args: Any, mode: Mode, questions: int, out: TextIO) -> dict[str, Any]:
    """Start the servers (and a grading worker when they share a Redis: they only
    enqueue then), run the bench on them, stop and remove everything."""
    own = start_servers(
        args.tick_ms,
        instances=mode.instances,
        database_url=args.database_url,
        redis_url=args.redis_url,
    )
    worker: OwnServer | None = None
    try:
        if args.redis_url is not None:
            worker = spawn_worker(own)
        users = [f"c{index}" for index in range(args.candidates)]
        print(f"inviting {len(users)} candidates...", file=out, flush=True)
        interview_id = create_interview(
            own.servers[0].http_url,
            own.secret,
            candidates=users,
            questions=questions,
            time_limit_s=TIME_LIMIT_S,
            kind=args.question_type,
        )
        bench = Bench(args, own, worker, interview_id, users, out)
        report = _event_loop_run(bench.run())
    finally:
        worker_exit = worker.stop() if worker is not None else None
        exits = own.stop()
        everyone = [*own.servers, *([worker] if worker is not None else [])]
        warnings = OwnServers(everyone, own.secret, own.directory).log_warnings()
        own.cleanup()
    report["mode"] = mode.as_dict()
    report["questions"] = questions
    report["server_exit"] = exits
    report["worker_exit"] = worker_exit
    report["server_log"] = warnings
    report["problems"] = run_problems(report)
    return report


def spawn_worker(own: OwnServers) -> OwnServer:
    """``python -m server worker`` with the instances' environment."""
    assert own.env is not None
    log_path = own.directory / "worker.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "worker"],
        cwd=REPO,
        env=own.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return OwnServer(process, 0, log_path, log)


def _event_loop_run(coroutine: Any) -> dict[str, Any]:
    try:
        import uvloop

        runner: Callable[[Any], dict[str, Any]] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in requirements/dev.txt
        runner = asyncio.run
    return runner(coroutine)


def _token(secret: str, sub: str) -> str:
    return issue_token(
        secret,
        sub=sub,
        role="recruiter",
        name=f"Bench {sub}",
        org=BENCH_ORG,
        ttl_s=TOKEN_TTL_S,
        now_s=time.time(),
    )


# -- the sockets -----------------------------------------------------------------------


class Candidate:
    """A candidate socket answering its current question when told to."""

    def __init__(self, user: str, secret: str, url: str) -> None:
        self.client = Client(user, secret)
        self.url = url
        self.session_id = ""
        self.question_index = 0
        self.question_count = 0
        self.busy = False  # an answer sent, its next state not yet received

    @property
    def can_answer(self) -> bool:
        return (
            self.client.ws is not None
            and not self.busy
            and self.question_index < self.question_count - 1
        )

    async def attach(self, interview_id: str, bench: Bench) -> None:
        state, _ = await self.client.attach(
            self.url, interview_id, resume=False, compression=None
        )
        self.session_id = str(state["session_id"])
        self.question_index = int(state["question_index"])
        self.question_count = int(state["question_count"])
        self.client.reader = asyncio.create_task(self._read(bench))

    async def answer(self, bench: Bench, phase: str) -> None:
        ws = self.client.ws
        assert ws is not None
        key = (self.session_id, self.question_index)
        self.busy = True
        bench.sent[phase][key] = epoch_ms()
        bench.phase_of[key] = phase
        frame = {
            "type": "answer",
            "question_index": self.question_index,
            "answer": ANSWER_TEXT,
        }
        await ws.send(json.dumps(frame))

    async def _read(self, bench: Bench) -> None:
        ws = self.client.ws
        assert ws is not None
        try:
            async for message in ws:
                if isinstance(message, bytes) or message.startswith(TICK_PREFIX):
                    continue
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "answer_ack":
                    key = (self.session_id, int(frame["question_index"]))
                    phase = bench.phase_of.get(key)
                    if phase is not None:
                        bench.acks[phase][key] = epoch_ms()
                elif kind == "state":
                    self.question_index = int(frame["question_index"])
                    self.busy = False
                elif kind == "error":
                    bench.answer_errors[str(frame.get("code"))] += 1
                    self.busy = False
                elif kind != "tick":
                    bench.other_frames[str(kind)] += 1
        except ConnectionClosed:
            pass
        if not self.client.closing:
            code = ws.close_code if ws.close_code is not None else 1006
            bench.candidate_closes[str(code)] += 1


class Monitor:
    """A recruiter's monitor socket subscribed to the interview, recording every
    event it receives."""

    def __init__(self, name: str, url: str, token: str, *, reference: bool) -> None:
        self.name = name
        self.url = url
        self.token = token
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.closing = False
        self.snapshot: dict[str, Any] | None = None
        self.snapshot_bytes = 0
        self.after = 0  # the snapshot's cursor
        self.last = 0  # the last cursor received
        self.last_at = 0.0  # when
        self.cursors = array("q")
        self.arrivals: list[tuple[Key, float]] = []  # answer_submitted
        self.logged: list[Logged] | None = [] if reference else None
        self.evaluated: set[Key] = set()
        self.submitted = 0  # answer_submitted events received
        self.errors: collections.Counter[str] = collections.Counter()
        self.close_code: int | None = None
        self.news = asyncio.Event()
        self.pong = asyncio.Event()

    async def open(self) -> None:
        self.ws = await connect(
            self.url,
            proxy=None,
            open_timeout=OPEN_TIMEOUT_S,
            ping_interval=None,
            max_size=None,  # a snapshot holds every attempt of the interview
            user_agent_header="interview-bench-monitor",
        )
        await self.ws.send(json.dumps({"type": "auth", "token": self.token}))
        hello = json.loads(await self._recv())
        if hello.get("type") != "hello":
            raise BenchError(f"monitor {self.name}: expected hello, got {hello}")

    async def subscribe(self, interview_id: str, since: int | None = None) -> float:
        """Subscribe; when the snapshot came (epoch ms). Then read every frame."""
        assert self.ws is not None
        frame: dict[str, Any] = {"type": "subscribe", "interview_id": interview_id}
        if since is not None:
            frame["since"] = since
        await self.ws.send(json.dumps(frame))
        text = await self._recv()
        arrived = epoch_ms()
        snapshot = json.loads(text)
        if snapshot.get("type") != "snapshot":
            raise BenchError(f"monitor {self.name}: expected snapshot, got {text:.300}")
        self.snapshot, self.snapshot_bytes = snapshot, len(text)
        self.after = self.last = int(snapshot["cursor"])
        self.reader = asyncio.create_task(self._read())
        return arrived

    async def _recv(self) -> str:
        assert self.ws is not None
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            message = await self.ws.recv()
        return message if isinstance(message, str) else message.decode()

    async def _read(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            async for message in ws:
                now = epoch_ms()
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "event":
                    self._event(frame, now)
                elif kind == "pong":
                    self.pong.set()
                elif kind == "error":
                    self.errors[str(frame.get("code"))] += 1
                else:
                    self.errors[f"frame {kind}"] += 1
        except ConnectionClosed:
            pass
        if not self.closing:
            self.close_code = ws.close_code if ws.close_code is not None else 1006

    def _event(self, frame: dict[str, Any], now: float) -> None:
        cursor = int(frame["cursor"])
        session, kind = str(frame["session_id"]), str(frame["kind"])
        self.cursors.append(cursor)
        self.last, self.last_at = cursor, now
        if self.logged is not None:
            self.logged.append((cursor, session, kind))
        if kind == "answer_submitted":
            self.submitted += 1
            self.arrivals.append(((session, int(frame["data"]["question_index"])), now))
        elif kind == "answer_evaluated":
            self.evaluated.add((session, int(frame["data"]["question_index"])))
        self.news.set()

    async def until(self, check: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not check():
                if self.close_code is not None:
                    raise BenchError(f"monitor {self.name} closed {self.close_code}")
                self.news.clear()
                await self.news.wait()

    async def ping(self) -> None:
        """Until a ``pong``: what the server sent before it has been received."""
        assert self.ws is not None
        self.pong.clear()
        await self.ws.send(json.dumps({"type": "ping", "client_time": 1}))
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            await self.pong.wait()

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


# -- the run ---------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        args: Any,
        own: OwnServers,
        worker: OwnServer | None,
        interview_id: str,
        users: list[str],
        out: TextIO,
    ) -> None:
        self.args = args
        self.own = own
        self.worker = worker
        self.interview_id = interview_id
        self.out = out
        on_candidates, on_monitors = placement(len(own.servers))
        self.candidate_instances = on_candidates
        self.monitor_instance = on_monitors
        urls = own.ws_urls
        self.candidates = [
            Candidate(user, own.secret, urls[on_candidates[i % len(on_candidates)]])
            for i, user in enumerate(users)
        ]
        monitor_url = urls[on_monitors].replace("/ws/candidate", "/ws/monitor")
        self.monitor_url = monitor_url
        self.monitors = [
            Monitor(
                str(i), monitor_url, _token(own.secret, f"watcher{i}"), reference=i == 0
            )
            for i in range(args.monitors)
        ]
        self.leaving = Monitor(
            "leaving", monitor_url, _token(own.secret, "leaver"), reference=False
        )
        self.sent: dict[str, dict[Key, float]] = {LIVE: {}, FILL: {}}
        self.acks: dict[str, dict[Key, float]] = {LIVE: {}, FILL: {}}
        self.phase_of: dict[Key, str] = {}
        self.answer_errors: collections.Counter[str] = collections.Counter()
        self.other_frames: collections.Counter[str] = collections.Counter()
        self.candidate_closes: collections.Counter[str] = collections.Counter()
        self.connect_failures: collections.Counter[str] = collections.Counter()
        self.phase = "connecting"
        self.started = time.monotonic()
        self.lags: list[float] = []
        self.skipped = 0  # answer slots with no candidate free to answer

    @property
    def reference(self) -> Monitor:
        return self.monitors[0]

    @property
    def acked(self) -> int:
        return sum(len(acks) for acks in self.acks.values())

    async def run(self) -> dict[str, Any]:
        background = [
            asyncio.create_task(self._probe_lag()),
            asyncio.create_task(self._progress()),
        ]
        guard = asyncio.timeout(self.args.timeout)
        try:
            async with guard:
                return await self._run()
        except TimeoutError as exc:
            waited = f"after {self.args.timeout:g} s" if guard.expired() else "waiting"
            raise BenchError(f"timed out {waited} in phase {self.phase}") from exc
        finally:
            for task in background:
                task.cancel()
            self.phase = "closing"
            await self._close_all()

    async def _run(self) -> dict[str, Any]:
        args = self.args
        for monitor in [*self.monitors, self.leaving]:
            await monitor.open()
            await monitor.subscribe(self.interview_id)
        connect_s = await self._connect_candidates()
        attached = sum(1 for c in self.candidates if c.client.ws is not None)
        print(f"{attached} candidates attached in {connect_s:.1f} s", file=self.out)
        self.phase = "warmup"
        await asyncio.sleep(args.warmup)

        self.phase = LIVE
        cpu_before = self._cpu()
        window_started = time.monotonic()
        end = window_started + args.measure
        await self._answer(args.answers_per_s, lambda: time.monotonic() >= end, LIVE)
        window_s = time.monotonic() - window_started
        cpu = self._cpu_figures(cpu_before, self._cpu(), window_s)
        await self._until_acknowledged()

        since = None
        if args.missed > 0:
            self.phase = FILL
            since = self.leaving.last
            await self.leaving.close()
            wanted = since + args.missed
            deadline = time.monotonic() + FILL_TIMEOUT_S

            def enough() -> bool:
                sent = sum(len(keys) for keys in self.sent.values())
                seen = self.reference
                reached = enough_events(
                    seen.last,
                    unsubmitted=sent - seen.submitted,
                    ungraded=sent - len(seen.evaluated),
                    wanted=wanted,
                )
                return reached or time.monotonic() > deadline

            await self._answer(args.fill_answers_per_s, enough, FILL)
            await self._until_acknowledged()
        self.phase = "settle"
        settled = await self._settle()
        head = self.reference.last
        if since is not None and head - since < args.missed:
            raise BenchError(
                f"only {head - since} of {args.missed} events in {FILL_TIMEOUT_S:.0f} s"
            )
        replay = None
        if since is not None:
            self.phase = "replay"
            replay = await self._replay(since, head)
        return self._report(connect_s, attached, cpu, window_s, settled, head, replay)

    # -- phases -------------------------------------------------------------------

    async def _connect_candidates(self) -> float:
        args = self.args
        started = time.monotonic()
        room = asyncio.Semaphore(args.connect_concurrency)

        async def one(candidate: Candidate) -> None:
            try:
                await candidate.attach(self.interview_id, self)
            except Exception as exc:
                self.connect_failures[failure_reason(exc)] += 1
            finally:
                room.release()

        tasks = []
        for index, candidate in enumerate(self.candidates):
            await asyncio.sleep(
                max(0.0, started + index / args.connect_rate - time.monotonic())
            )
            await room.acquire()
            tasks.append(asyncio.create_task(one(candidate)))
        await asyncio.gather(*tasks)
        return time.monotonic() - started

    async def _answer(self, rate: float, done: Callable[[], bool], phase: str) -> None:
        """One answer every ``1/rate`` s, from the candidates in turn, until
        ``done``; a candidate whose last answer is not settled yet is passed over."""
        interval = 1.0 / rate
        turn = 0
        count = len(self.candidates)
        next_at = time.monotonic()
        while not done():
            for offset in range(count):
                candidate = self.candidates[(turn + offset) % count]
                if candidate.can_answer:
                    turn = (turn + offset + 1) % count
                    with contextlib.suppress(ConnectionClosed):
                        await candidate.answer(self, phase)
                    break
            else:
                self.skipped += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _until_acknowledged(self) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while any(c.busy and c.client.ws is not None for c in self.candidates):
            if time.monotonic() > deadline:
                return  # counted as unacknowledged
            await asyncio.sleep(0.05)

    async def _settle(self) -> bool:
        """Until every acknowledged answer's grade reached the staying monitor, no
        event came for ``QUIET_S`` and every monitor is at the same cursor."""
        deadline = time.monotonic() + self.args.settle_timeout
        answered = {key for acks in self.acks.values() for key in acks}
        while time.monotonic() < deadline:
            if self.worker is not None and self.worker.process.poll() is not None:
                raise BenchError(f"the worker exited:\n{self.worker.log_tail()}")
            quiet = epoch_ms() - self.reference.last_at >= QUIET_S * 1000
            if quiet and answered <= self.reference.evaluated:
                head = self.reference.last
                if all(monitor.last == head for monitor in self.monitors):
                    return True
            await asyncio.sleep(0.1)
        return False

    async def _replay(self, since: int, head: int) -> dict[str, Any]:
        back = Monitor(
            "back", self.monitor_url, _token(self.own.secret, "leaver"), reference=True
        )
        opened = epoch_ms()
        await back.open()
        subscribed = epoch_ms()
        snapshot_at = await back.subscribe(self.interview_id, since)
        assert back.snapshot is not None and back.logged is not None
        await back.until(lambda: back.last >= head, REPLAY_TIMEOUT_S)
        last_at = back.last_at
        await back.ping()  # nothing came after the last replayed event
        await back.close()
        reference = self.reference.logged
        assert reference is not None
        replay_s = (last_at - snapshot_at) / 1000
        return {
            "since": since,
            "head": head,
            "missed": head - since,
            "recovered": bool(back.snapshot["recovered"]),
            "snapshot_cursor": back.snapshot["cursor"],
            "snapshot_sessions": len(back.snapshot["sessions"]),
            "snapshot_kb": round(back.snapshot_bytes / 1024, 1),
            "connect_ms": round(subscribed - opened, 1),
            "snapshot_ms": round(snapshot_at - subscribed, 1),
            "last_event_ms": round(last_at - subscribed, 1),
            "events_per_s": round((head - since) / replay_s) if replay_s > 0 else None,
            "received": len(back.logged),
            "problems": replay_problems(back.logged, reference, since=since, head=head),
        }

    # -- readings -----------------------------------------------------------------

    def _cpu(self) -> dict[str, Any]:
        pids = {
            f"instance {i}": server.pid for i, server in enumerate(self.own.servers)
        }
        if self.worker is not None:
            pids["worker"] = self.worker.pid
        pids["bench"] = os.getpid()
        ticks = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                ticks[name] = process_cpu_ticks(pid)
        return {
            "processes": ticks,
            "machine": machine_cpu_ticks(),
            "named": named_cpu_ticks(),
        }

    def _cpu_figures(
        self, before: dict[str, Any], after: dict[str, Any], window_s: float
    ) -> dict[str, Any]:
        tck = clk_tck()
        figures: dict[str, Any] = {
            name: round(cpu_percent(before["processes"][name], ticks, tck, window_s))
            for name, ticks in after["processes"].items()
            if name in before["processes"]
        }
        busy_before, total_before = before["machine"]
        busy_after, total_after = after["machine"]
        cores = os.cpu_count() or 1
        total = total_after - total_before
        machine = (busy_after - busy_before) / total * 100 * cores if total else None
        figures["machine"] = None if machine is None else round(machine)
        for name, ticks in after["named"].items():
            # A process of that name that exited meanwhile took its ticks with it.
            used = cpu_percent(before["named"].get(name, 0), ticks, tck, window_s)
            figures[name] = max(0, round(used))
        return figures

    async def _probe_lag(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.lags.append((time.monotonic() - started - LAG_PROBE_S) * 1000)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            attached = sum(1 for c in self.candidates if c.client.ws is not None)
            print(
                f"{time.monotonic() - self.started:6.1f}s {self.phase:<10} "
                f"candidates {attached} answers {self.acked} "
                f"cursor {self.reference.last} "
                f"graded {len(self.reference.evaluated)}",
                file=self.out,
                flush=True,
            )

    async def _close_all(self) -> None:
        await asyncio.gather(
            *(candidate.client.close() for candidate in self.candidates),
            *(monitor.close() for monitor in [*self.monitors, self.leaving]),
            return_exceptions=True,
        )

    def _report(
        self,
        connect_s: float,
        attached: int,
        cpu: dict[str, Any],
        window_s: float,
        settled: bool,
        head: int,
        replay: dict[str, Any] | None,
    ) -> dict[str, Any]:
        args = self.args
        phases = {}
        for phase in (LIVE, FILL):
            arrivals = [
                [(key, at) for key, at in monitor.arrivals if key in self.sent[phase]]
                for monitor in self.monitors
            ]
            phases[phase] = latency_figures(
                self.acks[phase], self.sent[phase], arrivals
            )
        orders = [order_of(monitor.cursors, monitor.after) for monitor in self.monitors]
        closes = collections.Counter(
            str(monitor.close_code)
            for monitor in [*self.monitors, self.leaving]
            if monitor.close_code is not None
        )
        errors: collections.Counter[str] = collections.Counter()
        for monitor in self.monitors:
            errors.update(monitor.errors)
        sent = sum(len(keys) for keys in self.sent.values())
        return {
            "candidates": args.candidates,
            "monitors": args.monitors,
            "answers_per_s": args.answers_per_s,
            "fill_answers_per_s": args.fill_answers_per_s,
            "measure_s": round(window_s, 1),
            "placement": {
                "candidates_on": self.candidate_instances,
                "monitors_on": self.monitor_instance,
                "worker": self.worker is not None,
            },
            "connect": {
                "attached": attached,
                "failed": sum(self.connect_failures.values()),
                "failures": dict(self.connect_failures),
                "seconds": round(connect_s, 1),
            },
            "answers": {
                "sent": sent,
                "acknowledged": self.acked,
                "unacknowledged": sent - self.acked,
                "errors": dict(self.answer_errors),
                "skipped_slots": self.skipped,
                "other_frames": dict(self.other_frames),
                "candidate_closes": dict(self.candidate_closes),
            },
            LIVE: phases[LIVE],
            FILL: phases[FILL],
            "streams": {
                "events": sum(order.events for order in orders),
                "gaps": sum(order.gaps for order in orders),
                "repeats": sum(order.repeats for order in orders),
                "closes": dict(closes),
                "errors": dict(errors),
            },
            "settled": settled,
            "head": head,
            "replay": replay,
            "cpu_percent": cpu,
            "loop_lag_ms": summarize(self.lags).as_dict(),
        }


# -- the report ------------------------------------------------------------------------


def _ms(summary: dict[str, Any]) -> str:
    if not summary["count"]:
        return "n/a"
    return f"{summary['p50']:.1f} / {summary['p99']:.1f} / {summary['max']:.1f} ms"


def format_report(report: dict[str, Any]) -> str:
    place = report["placement"]
    connect, answers = report["connect"], report["answers"]
    lines = [
        f"monitor bench: {report['mode']['label']}; {report['candidates']} candidates "
        f"on instance(s) {place['candidates_on']}, {report['monitors']} monitors on "
        f"instance {place['monitors_on']}"
        + ("; grading worker" if place["worker"] else "; grading in-process"),
        f"  connect       {connect['attached']} attached in {connect['seconds']} s "
        f"({connect['failed']} failed)",
    ]
    for phase, rate in (
        (LIVE, report["answers_per_s"]),
        (FILL, report["fill_answers_per_s"]),
    ):
        figures = report[phase]
        if not figures["answers"]:
            continue
        lines += [
            f"  {phase:<13} {rate:g} answers/s: {figures['answers']} answers, "
            f"ack p50/p99/max {_ms(figures['ack_ms'])}",
            f"    EVENT AFTER ACK  p50/p99/max {_ms(figures['event_after_ack_ms'])} "
            f"({figures['deliveries']} deliveries, {figures['undelivered']} "
            f"undelivered, {figures['event_before_ack']} before the ack)",
            f"    event after send p50/p99/max {_ms(figures['event_after_send_ms'])}",
        ]
    streams = report["streams"]
    lines.append(
        f"  streams       {streams['events']} events to {report['monitors']} "
        f"monitors: {streams['gaps']} skipped, {streams['repeats']} repeated; "
        f"closes {streams['closes']}, errors {streams['errors']}"
    )
    lines.append(
        f"  answers       {answers['acknowledged']} of {answers['sent']} acknowledged, "
        f"errors {answers['errors']}, settled {report['settled']} at cursor "
        f"{report['head']}"
    )
    replay = report["replay"]
    if replay is not None:
        verdict = "exact" if not replay["problems"] else "; ".join(replay["problems"])
        lines.append(
            f"  REPLAY        {replay['missed']} missed after {replay['since']}: "
            f"snapshot {replay['snapshot_ms']} ms ({replay['snapshot_sessions']} "
            f"sessions, {replay['snapshot_kb']} KB, recovered {replay['recovered']}), "
            f"last event {replay['last_event_ms']} ms ({replay['events_per_s']} "
            f"events/s), {replay['received']} received: {verdict}"
        )
    cpu = report["cpu_percent"]
    lines.append(
        "  cpu (live)    "
        + ", ".join(f"{name} {value}%" for name, value in cpu.items())
        + f"; bench loop lag {_ms(report['loop_lag_ms'])}"
    )
    lines.append(f"  server log    {report['server_log']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
