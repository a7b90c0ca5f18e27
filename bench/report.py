"""Merging the workers' samples into the report, and printing it."""

from __future__ import annotations

import math
from typing import Any

from bench.instances import Mode
from bench.options import RunOptions
from bench.stats import merge_counts, percentile, summarize

MISSED_TICKS_TOLERANCE = 0.001  # of the expected ticks


def build_report(
    options: RunOptions,
    *,
    mode: Mode,
    results: list[dict[str, Any]],
    connected: dict[int, int],
    window: tuple[int, int],
    connect_s: float,
    server: dict[str, Any],
    machine_cpu: float | None,
    backing_cpu: dict[str, float],
    generator_cpu: list[float],
) -> dict[str, Any]:
    """``server``: :func:`bench.instances.server_figures` (totals and per instance)."""

    def joined(key: str) -> list[float]:
        return [value for result in results for value in result[key]]

    def total(key: str) -> int:
        return sum(int(result[key]) for result in results)

    def counts(key: str) -> dict[str, int]:
        return merge_counts(result[key] for result in results)

    opened = sum(connected.values())
    expected, received = total("ticks_expected"), total("ticks_received")
    tick_ms = next(
        (r["hello_tick_ms"] for r in results if r["hello_tick_ms"]), options.tick_ms
    )
    report: dict[str, Any] = {
        "mode": mode.as_dict(),
        "sockets": options.sockets,
        "procs": options.procs,
        "compression": options.compression or "none",
        "tick_ms": tick_ms,
        "connect": {
            "opened": opened,
            "rate_per_s": options.connect_rate,
            "duration_s": round(connect_s, 2),
            "setup_ms": summarize(joined("setup_ms")).as_dict(),
            "failures": counts("setup_failures"),
        },
        "window": {
            "warmup_s": options.warmup_s,
            "measure_s": options.measure_s,
            "start_ms": window[0],
            "end_ms": window[1],
        },
        "ticks": {
            "expected": expected,
            "received": received,
            "missed": max(0, expected - received),
            "extra": max(0, received - expected),
            "duplicate": total("ticks_duplicate"),
            "stale": total("ticks_stale"),
            "client_lateness_ms": summarize(joined("client_late")).as_dict(),
            "server_lateness_ms": summarize(joined("server_late")).as_dict(),
        },
        "answers": {
            "rate_per_s": options.answers_per_s,
            "sent": total("answers_sent"),
            "ack_ms": summarize(joined("answer_ms")).as_dict(),
            "status": counts("answer_status"),
            "errors": counts("answer_errors"),
            "unacknowledged": total("answers_unacked"),
        },
        "reconnects": {
            "sample": min(options.reconnects, options.sockets),
            "state_ms": summarize(joined("reconnect_ms")).as_dict(),
            "failures": counts("reconnect_failures"),
            "takeovers": total("reconnect_takeovers"),
            # Each resumes on the next instance: another one when there are several.
            "cross_instance": mode.instances > 1,
        },
        "server": server,
        "machine_cpu_percent": machine_cpu,
        # Every process of these names, whoever uses them.
        "backing_cpu_percent": {
            name: round(cpu, 1) for name, cpu in backing_cpu.items()
        },
        "load_generator": {
            "cpu_percent_per_proc": [round(cpu, 1) for cpu in generator_cpu],
            "loop_lag_ms": summarize(joined("loop_lag_ms")).as_dict(),
        },
        "unexpected_closes": counts("close_codes"),
        "error_codes": counts("error_codes"),
        "other_frames": counts("frames_other"),
    }
    report["problems"] = problems(report)
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """What makes a run a failure, whatever its latencies."""
    found: list[str] = []
    connect, ticks = report["connect"], report["ticks"]
    if connect["opened"] < report["sockets"]:
        found.append(
            f"only {connect['opened']} of {report['sockets']} sockets attached "
            f"({connect['failures']})"
        )
    if ticks["expected"] == 0:
        found.append("no tick was due in the window")
    elif ticks["missed"] > ticks["expected"] * MISSED_TICKS_TOLERANCE:
        found.append(f"{ticks['missed']} of {ticks['expected']} ticks missed")
    if ticks["duplicate"]:
        found.append(f"{ticks['duplicate']} duplicate ticks")
    if report["unexpected_closes"]:
        found.append(f"unexpected closes: {report['unexpected_closes']}")
    answers = report["answers"]
    if answers["errors"] or answers["unacknowledged"]:
        found.append(
            f"answers: errors {answers['errors']}, "
            f"{answers['unacknowledged']} unacknowledged"
        )
    if report["reconnects"]["failures"]:
        found.append(f"reconnect failures: {report['reconnects']['failures']}")
    return found


def progress_line(
    *,
    elapsed_s: float,
    phase: str,
    sockets: int,
    progress: list[dict[str, Any]],
    recent: list[float],
    server_cpu: float | None,
) -> str:
    opened = sum(int(p["open"]) for p in progress)
    ticks = sum(int(p["ticks"]) for p in progress)
    answers = sum(int(p["answers"]) for p in progress)
    p99 = percentile(recent, 99)
    return (
        f"[{elapsed_s:6.1f}s] {phase:<10} open {opened:>6}/{sockets:<6} "
        f"ticks {ticks:>9,}  p99(5s) {_ms(p99):>9}  answers {answers:>6}  "
        f"server cpu {_pct(server_cpu)}"
    )


def format_report(report: dict[str, Any]) -> str:
    connect, window, ticks = report["connect"], report["window"], report["ticks"]
    answers, reconnects, server = (
        report["answers"],
        report["reconnects"],
        report["server"],
    )
    generator = report["load_generator"]
    mode = report["mode"]
    where = "another instance" if reconnects["cross_instance"] else "the same server"
    lines = [
        "",
        f"== bench: {mode['label']}; {report['sockets']} sockets, "
        f"{report['procs']} client process(es), compression {report['compression']}, "
        f"tick {report['tick_ms']} ms ==",
        f"ANSWER ACK   {_series(answers['ack_ms'], True)} at {answers['rate_per_s']:g} "
        f"answers/s ({answers['sent']} sent; {answers['status'] or 'no acks'}; errors "
        f"{answers['errors'] or 'none'}; unacknowledged {answers['unacknowledged']})",
        f"connect      {connect['opened']} attached in {connect['duration_s']} s "
        f"(at most {connect['rate_per_s']:g}/s); connect-to-state "
        f"{_series(connect['setup_ms'])}; failures {connect['failures'] or 'none'}",
        f"window       warm-up {window['warmup_s']:g} s, then "
        f"{window['measure_s']:g} s measured",
        f"ticks        expected {ticks['expected']:,}, received {ticks['received']:,}, "
        f"missed {ticks['missed']:,}, extra {ticks['extra']:,}, "
        f"duplicate {ticks['duplicate']}, previous question after its answer "
        f"{ticks['stale']}",
        f"lateness     at client {_series(ticks['client_lateness_ms'], True)}",
        f"             at server {_series(ticks['server_lateness_ms'], True)}",
        f"reconnect    to state {_series(reconnects['state_ms'])} (sample "
        f"{reconnects['sample']}, resumed on {where}; takeovers "
        f"{reconnects['takeovers']}; failures {reconnects['failures'] or 'none'})",
        f"server       {_server_figures(server)} (all instances)",
    ]
    rows = server.get("instances", [])
    if len(rows) > 1:
        for index, row in enumerate(rows):
            lines.append(
                f"  instance {index} {_server_figures(row)}; {row['sockets']} sockets, "
                f"pid {row['pid'] or 'n/a'}"
            )
    lines += [
        f"machine      cpu {_pct(report.get('machine_cpu_percent'))} over the window "
        "(all processes; 100% = one core), of which "
        + ", ".join(
            f"{name} {_pct(cpu)}"
            for name, cpu in report.get("backing_cpu_percent", {}).items()
        )
        + " (all their processes, whoever uses them)",
        f"load gen     cpu per process {generator['cpu_percent_per_proc']} %; event "
        f"loop lag {_series(generator['loop_lag_ms'], True)}",
        f"closes       unexpected {report['unexpected_closes'] or 'none'}; other "
        f"errors {report['error_codes'] or 'none'}; other frames "
        f"{report['other_frames'] or 'none'}",
    ]
    if "exit_codes" in server:
        lines.append(f"server exit  {server['exit_codes']}")
    logged = server.get("log_warnings") or {}
    if logged.get("count"):
        lines.append(f"server log   {logged['count']} line(s) at WARNING or above:")
        kinds = list(logged["kinds"].items())
        lines += [f"  {count:>6} x {kind}" for count, kind in _swap(kinds[:5])]
        if len(kinds) > 5:
            lines.append(f"  ... and {len(kinds) - 5} other kinds (see the JSON)")
    if report["problems"]:
        lines.append("PROBLEMS     " + "; ".join(report["problems"]))
    else:
        lines.append("result       ok")
    return "\n".join(lines)


def _server_figures(figures: dict[str, Any]) -> str:
    before, after = figures.get("rss_before_kb"), figures.get("rss_after_kb")
    return (
        f"cpu {_pct(figures.get('cpu_percent'))} of one core over the window; rss "
        f"{_mb(before)} before, {_mb(after)} with the sockets, "
        f"{_kb(figures.get('kb_per_socket'))} per socket"
    )


def _swap(pairs: list[tuple[str, int]]) -> list[tuple[int, str]]:
    return [(count, kind) for kind, count in pairs]


def _series(summary: dict[str, Any], with_max: bool = False) -> str:
    if not summary["count"]:
        return "no samples"
    text = f"p50 {_ms(summary['p50'])} p99 {_ms(summary['p99'])}"
    if with_max:
        text += f" max {_ms(summary['max'])}"
    return f"{text} (n={summary['count']:,})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.0f}%"


def _mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def _kb(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb:.1f} KB"
