"""What one bench run is asked to do (``python -m bench`` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.instances import Mode, resolve_mode


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
    server_urls: tuple[str, ...] = ()
    server_pids: tuple[int, ...] = ()
    jwt_secret: str | None = None
    instances: int | None = None  # None: 1 (own servers) or one per --server-url
    database_url: str | None = None
    redis_url: str | None = None

    def mode(self) -> Mode:
        """Raises: BenchError (flags that make no mode)."""
        return resolve_mode(
            server_urls=self.server_urls,
            server_pids=self.server_pids,
            instances=self.instances,
            database_url=self.database_url,
            redis_url=self.redis_url,
            jwt_secret=self.jwt_secret,
        )
