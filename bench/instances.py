"""Pure helpers of the bench's server instances: which mode a run is in, which instance
each socket uses, and the server figures per instance and in total.

No I/O here, so that ``tests/unit/test_bench.py`` can check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.server import BenchError
from bench.stats import per_socket_kb

LOCAL_HOSTS = ("127.0.0.1", "localhost")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Mode:
    """What the bench runs against.

    ``storage``: ``sqlite`` or ``postgresql`` (servers the bench starts itself), or
    ``external`` (``--server-url``: whatever those servers use). ``redis``: the bench's
    own servers share a Redis (``None`` for external servers: unknown).
    """

    storage: str
    redis: bool | None
    instances: int

    @property
    def own(self) -> bool:
        return self.storage != EXTERNAL

    @property
    def label(self) -> str:
        storage = self.storage + ("+redis" if self.redis else "")
        plural = "" if self.instances == 1 else "s"
        return f"{storage}, {self.instances} instance{plural}"

    def as_dict(self) -> dict[str, object]:
        return {
            "storage": self.storage,
            "redis": self.redis,
            "instances": self.instances,
            "label": self.label,
        }


def check_local(url: str) -> None:
    """The bench only ever targets this machine."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in LOCAL_HOSTS:
        raise BenchError(f"--server-url must be ws://127.0.0.1:PORT/..., got {url!r}")


def resolve_mode(
    *,
    server_urls: Sequence[str],
    server_pids: Sequence[int],
    instances: int | None,
    database_url: str | None,
    redis_url: str | None,
    jwt_secret: str | None,
) -> Mode:
    """Check that the flags make one of the modes of bench/README.md.

    Raises:
        BenchError: they do not; the message says which flag to change.
    """
    if instances is not None and instances < 1:
        raise BenchError(f"--instances must be at least 1, got {instances}")
    if server_urls:
        own = [
            flag
            for flag, given in (
                ("--instances", instances is not None),
                ("--database-url", database_url is not None),
                ("--redis-url", redis_url is not None),
            )
            if given
        ]
        if own:
            verb = "is" if len(own) == 1 else "are"
            raise BenchError(
                f"{', '.join(own)} {verb} for the servers the bench starts itself; "
                "with --server-url it starts none"
            )
        for url in server_urls:
            check_local(url)
        if len(set(server_urls)) != len(server_urls):
            raise BenchError("the same --server-url is given twice")
        if server_pids and len(server_pids) != len(server_urls):
            raise BenchError(
                f"{len(server_pids)} --server-pid for {len(server_urls)} --server-url: "
                "give one pid per URL, in the same order, or none"
            )
        if not jwt_secret:
            raise BenchError("--server-url needs --jwt-secret (or JWT_SECRET)")
        return Mode(EXTERNAL, None, len(server_urls))
    if server_pids:
        raise BenchError("--server-pid goes with --server-url")
    count = instances or 1
    if database_url is not None:
        if urlsplit(database_url).scheme not in POSTGRES_SCHEMES:
            raise BenchError(
                "--database-url must be a postgresql:// server URL on which the bench "
                f"may create a database, got {database_url!r}"
            )
        if redis_url is None:
            raise BenchError(
                "--database-url needs --redis-url: servers on PostgreSQL share locks "
                "and news through Redis (e.g. --redis-url redis://127.0.0.1:6379/0)"
            )
    if redis_url is not None and urlsplit(redis_url).scheme not in REDIS_SCHEMES:
        raise BenchError(f"--redis-url must be a redis:// URL, got {redis_url!r}")
    if count > 1 and (database_url is None or redis_url is None):
        raise BenchError(
            f"--instances {count} needs --database-url and --redis-url: several "
            "instances share one PostgreSQL database and one Redis (SQLite is one "
            "process's)"
        )
    storage = SQLITE if database_url is None else POSTGRESQL
    return Mode(storage, redis_url is not None, count)


def instance_of(socket_index: int, instances: int) -> int:
    """Round robin: socket ``i`` (over all client processes) uses instance
    ``i mod instances``."""
    if instances < 1:
        raise ValueError(f"instances must be positive, got {instances}")
    return socket_index % instances


def reconnect_instance(current: int, instances: int) -> int:
    """Where a reconnecting socket resumes: the next instance (another one, when
    there are several: the candidate switches instances)."""
    if instances < 1:
        raise ValueError(f"instances must be positive, got {instances}")
    return (current + 1) % instances


def sockets_per_instance(sockets: int, instances: int) -> list[int]:
    """How many of ``sockets`` each instance gets from :func:`instance_of`."""
    if instances < 1:
        raise ValueError(f"instances must be positive, got {instances}")
    size, extra = divmod(sockets, instances)
    return [size + (1 if index < extra else 0) for index in range(instances)]


@dataclass(frozen=True, slots=True)
class InstanceFigures:
    """One server process's readings (``None``: not known, e.g. no pid)."""

    url: str
    pid: int | None
    sockets: int  # assigned to it at connect time
    cpu_percent: float | None
    rss_before_kb: int | None
    rss_after_kb: int | None


def _total(values: Sequence[float | int | None]) -> float | int | None:
    """The sum, or ``None`` when any is unknown (a partial sum would mislead)."""
    if not values or any(value is None for value in values):
        return None
    return sum(value for value in values if value is not None)


def server_figures(
    instances: Sequence[InstanceFigures], opened: int
) -> dict[str, object]:
    """Server CPU and RSS per instance and in total (the sum over instances).

    Per socket: the RSS growth over the sockets each instance was given, and in
    total over the sockets that attached.
    """
    rows: list[dict[str, object]] = []
    for figures in instances:
        kb = None
        if figures.rss_before_kb is not None and figures.rss_after_kb is not None:
            kb = per_socket_kb(
                figures.rss_before_kb, figures.rss_after_kb, figures.sockets
            )
        rows.append(
            {
                "url": figures.url,
                "pid": figures.pid,
                "sockets": figures.sockets,
                "cpu_percent": figures.cpu_percent,
                "rss_before_kb": figures.rss_before_kb,
                "rss_after_kb": figures.rss_after_kb,
                "kb_per_socket": kb,
            }
        )
    before = _total([figures.rss_before_kb for figures in instances])
    after = _total([figures.rss_after_kb for figures in instances])
    kb_per_socket = None
    if before is not None and after is not None:
        kb_per_socket = per_socket_kb(int(before), int(after), opened)
    return {
        "cpu_percent": _total([figures.cpu_percent for figures in instances]),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_socket": kb_per_socket,
        "instances": rows,
    }
