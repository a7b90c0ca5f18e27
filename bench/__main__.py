"""``python -m bench``: open N candidate sockets, measure the server.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.options import RunOptions
from bench.report import format_report
from bench.run import MAX_SOCKETS_PER_PROC, run_once
from bench.server import BenchError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
DEFAULT_STEPS = "1000,2000,4000,6000,8000,10000"
EXAMPLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EXAMPLE_REDIS_URL = "redis://127.0.0.1:6379/0"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Open N candidate sockets on 127.0.0.1, take them through an "
        "interview and report tick lateness, answer-ack and reconnect latency, and "
        "the server's CPU and memory.",
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--sockets", type=_positive_int, metavar="N", help="sockets")
    size.add_argument(
        "--find-max",
        action="store_true",
        help="run once per --steps size and report the largest whose p99 client "
        "tick lateness stays under --max-p99-ms",
    )
    parser.add_argument(
        "--procs",
        type=_positive_int,
        metavar="P",
        help="client processes (default: one per 10,000 sockets)",
    )
    parser.add_argument("--warmup", type=_non_negative, default=10.0, metavar="S")
    parser.add_argument("--measure", type=_positive, default=30.0, metavar="S")
    parser.add_argument(
        "--tick-ms",
        type=_positive_int,
        default=1000,
        help="tick interval the bench's own server is started with (default 1000)",
    )
    parser.add_argument(
        "--answers-per-s",
        type=_non_negative,
        default=50.0,
        metavar="R",
        help="answers per second, all sockets together, during the window",
    )
    parser.add_argument(
        "--connect-rate", type=_positive, default=500.0, metavar="R", help="connects/s"
    )
    parser.add_argument(
        "--connect-concurrency",
        type=_positive_int,
        default=200,
        metavar="K",
        help="connects in flight at once, all processes together",
    )
    parser.add_argument(
        "--reconnects", type=_non_negative_int, default=200, metavar="K"
    )
    parser.add_argument("--reconnect-rate", type=_positive, default=20.0, metavar="R")
    parser.add_argument(
        "--compression",
        choices=("none", "deflate"),
        default="none",
        help="offer permessage-deflate as browsers do (default none)",
    )
    parser.add_argument(
        "--server-url",
        action="append",
        default=[],
        metavar="URL",
        help="target a running server (ws://127.0.0.1:PORT/ws/candidate) instead of "
        "starting one; repeat for several instances (sockets are shared round robin, "
        "reconnects resume on the next instance); needs --jwt-secret",
    )
    parser.add_argument(
        "--server-pid",
        action="append",
        default=[],
        type=int,
        metavar="PID",
        help="the pid of each --server-url, in the same order, for CPU and RSS",
    )
    parser.add_argument(
        "--instances",
        type=_positive_int,
        metavar="K",
        help="server instances the bench starts (default 1; more than one needs "
        "--database-url and --redis-url)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run the bench's servers on PostgreSQL: a server URL on which the bench "
        "creates (and at the end drops) a database bench_<random>, e.g. "
        f"{EXAMPLE_DATABASE_URL}; needs --redis-url",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="give the bench's servers this Redis (REDIS_URL, with a fresh "
        f"REDIS_PREFIX whose keys are deleted at the end), e.g. {EXAMPLE_REDIS_URL}",
    )
    parser.add_argument(
        "--jwt-secret",
        default=os.environ.get("JWT_SECRET"),
        metavar="SECRET",
        help="that server's JWT_SECRET (default: $JWT_SECRET)",
    )
    parser.add_argument(
        "--steps", default=DEFAULT_STEPS, help=f"--find-max sizes ({DEFAULT_STEPS})"
    )
    parser.add_argument("--max-p99-ms", type=_positive, default=100.0)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report")
    return parser


def options_for(args: argparse.Namespace, sockets: int) -> RunOptions:
    procs = args.procs or max(1, math.ceil(sockets / MAX_SOCKETS_PER_PROC))
    return RunOptions(
        sockets=sockets,
        procs=min(procs, sockets),
        warmup_s=args.warmup,
        measure_s=args.measure,
        tick_ms=args.tick_ms,
        answers_per_s=args.answers_per_s,
        connect_rate=args.connect_rate,
        connect_concurrency=args.connect_concurrency,
        reconnects=args.reconnects,
        reconnect_rate=args.reconnect_rate,
        compression=None if args.compression == "none" else args.compression,
        server_urls=tuple(args.server_url),
        server_pids=tuple(args.server_pid),
        jwt_secret=args.jwt_secret,
        instances=args.instances,
        database_url=args.database_url,
        redis_url=args.redis_url,
    )


def find_max(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    steps = sorted({_positive_int(step) for step in args.steps.split(",")})
    runs: list[dict[str, Any]] = []
    best: int | None = None
    for sockets in steps:
        report = run_once(options_for(args, sockets))
        print(format_report(report), flush=True)
        p99 = report["ticks"]["client_lateness_ms"]["p99"]
        passed = not report["problems"] and p99 is not None and p99 < args.max_p99_ms
        runs.append({"sockets": sockets, "passed": passed, "report": report})
        if not passed:
            break
        best = sockets
    summary = {
        "mode": options_for(args, 1).mode().as_dict(),
        "max_p99_ms": args.max_p99_ms,
        "largest_passing": best,
        "runs": runs,
    }
    print("\n== find-max ==")
    for run in runs:
        report = run["report"]
        print(
            f"{run['sockets']:>6} sockets: p99 client lateness "
            f"{report['ticks']['client_lateness_ms']['p99']} ms, server cpu "
            f"{report['server']['cpu_percent']}%: "
            f"{'pass' if run['passed'] else 'FAIL ' + str(report['problems'])}"
        )
    print(f"largest N with p99 < {args.max_p99_ms:g} ms: {best}")
    return summary, best is not None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options_for(args, args.sockets or 1).mode()  # refuse bad flags at once
        if args.find_max:
            output, ok = find_max(args)
        else:
            output = run_once(options_for(args, args.sockets))
            print(format_report(output), flush=True)
            ok = not output["problems"]
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_ERROR
    if args.json is not None:
        args.json.write_text(json.dumps(output, indent=2, default=_jsonable) + "\n")
    return EXIT_OK if ok else EXIT_PROBLEMS


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
