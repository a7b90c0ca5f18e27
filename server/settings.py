"""Server configuration, built once from the environment (STYLE.md section 10).

Only ``server/__main__.py`` calls :meth:`Settings.from_environ`; everything else gets a
``Settings`` passed in, and tests build ``Settings(...)`` themselves. Every field has an
environment variable, listed in the README.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.config import Config
from starlette.datastructures import Secret

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///var/interview.db"
DEV_JWT_SECRET = "dev-secret-change-me-not-for-production"
"""The development secret, published here: anyone can sign any token with it.

Used only without JWT_SECRET on SQLite, and then only on a loopback interface
(:meth:`Settings.check_host`; ``demo`` keeps a random secret beside its database
instead). Refused with PostgreSQL or REDIS_URL, even when set as JWT_SECRET.
At least 32 bytes, like every accepted JWT_SECRET: HS256 wants a key as long as its
hash (RFC 7518 section 3.2), and PyJWT warns on shorter ones.
"""

MIN_JWT_SECRET_BYTES = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+asyncpg")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; startup stops.

    Attributes:
        variable: the environment variable at fault.
    """

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Every Redis key and channel starts with it: instances sharing one prefix
    # coordinate with each other, and nothing else.
    redis_prefix: str = "interview:"
    jwt_secret: Secret = Secret(DEV_JWT_SECRET)
    # Tokens living longer (exp - iat, or exp - now without iat) are refused.
    jwt_max_ttl_s: int | None = None
    # When set, tokens must carry this aud and this iss.
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    tick_interval_ms: int = 1000
    default_grace_ms: int = 2000
    # Empty: same origin only (an Origin whose host:port is the request's Host).
    allowed_origins: tuple[str, ...] = ()
    auth_timeout_s: float = 10.0
    max_frame_bytes: int = 1_048_576
    max_answer_chars: int = 100_000
    rate_per_s: float = 20.0
    rate_burst: int = 50
    flood_close_s: float = 5.0
    send_queue_max: int = 64
    # The monitor socket's send queue, in frames: room for a burst of events (a
    # batch of grades) without closing 4008; replays wait for room instead.
    monitor_queue_max: int = 2_000
    # How often a monitor reads the event log for what an announcement may have lost.
    monitor_check_s: float = 5.0
    # Event log retention per interview (PROTOCOL.md 2, ``since``): the newest
    # count, none older than the age; pruned every minute by serve.
    event_retention_count: int = 100_000
    event_retention_s: int = 30 * 86_400
    # Ping interval and pong timeout: a vanished client lets go within 2 x 15 s.
    keepalive_s: float = 15.0
    # Descriptors of the soft RLIMIT_NOFILE kept for the database, Redis and the
    # sandbox: a candidate socket that would use one is refused with HTTP 503.
    reserved_fds: int = 256
    sweep_interval_ms: int = 1000
    db_pool_max: int = 10
    # A PostgreSQL connect or statement taking longer fails (an unreachable database
    # refuses writes within this instead of hanging them).
    db_timeout_s: float = 5.0
    # Interviews kept in memory per process, by count and by their definitions' JSON
    # size (the least recently used go first; they are read again when needed).
    interview_cache_max: int = 1_000
    interview_cache_max_bytes: int = 32 * 1024 * 1024
    # What one organisation may store through the API (counted in the database).
    org_max_interviews: int = 1_000
    org_max_definition_bytes: int = 100 * 1024 * 1024
    public_url: str | None = None
    log_level: str = "INFO"
    model_short_answer: str | None = None
    model_code: str | None = None
    model_summary: str | None = None
    model_api_base: str | None = None
    # Grades one process (a worker, or serve on the embedded default) runs at once.
    grading_concurrency: int = 64
    # Code runs in the sandbox one process holds at once, whatever the grades at once
    # (each run may take processes x address-space limit of memory; see README).
    sandbox_concurrency: int = field(default_factory=lambda: _cpu_count())
    # Webhooks: endpoints on loopback or private networks are refused (SSRF) unless
    # allowed; one attempt's time limit (its lease is twice it); attempts in flight
    # per process; how often due deliveries are looked for; how long a rotated
    # secret keeps signing by default; endpoints per organisation.
    webhook_allow_private: bool = False
    webhook_timeout_s: float = 15.0
    webhook_concurrency: int = 32
    webhook_poll_ms: int = 1000
    webhook_rotation_grace_s: int = 24 * 3600
    webhook_max_endpoints: int = 50

    @property
    def uses_dev_secret(self) -> bool:
        return str(self.jwt_secret) == DEV_JWT_SECRET

    @property
    def is_postgres(self) -> bool:
        return _is_postgres(self.database_url)

    def check_host(self, host: str) -> None:
        """Refuse to listen on ``host`` with the development secret unless loopback.

        Raises:
            SettingsError: JWT_SECRET is unset (or the development secret) and
                ``host`` is not a loopback address.
        """
        if self.uses_dev_secret and not is_loopback(host):
            raise SettingsError(
                "JWT_SECRET",
                f"is required to listen on {host or 'every interface'}: without it "
                "the published development secret signs tokens, which is only "
                "allowed on 127.0.0.1 (set a random value of 32+ bytes, e.g. "
                "`openssl rand -hex 32`)",
            )

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether a WebSocket handshake's ``Origin`` may connect (PROTOCOL.md 1).

        No ``Origin`` (a non-browser client) is allowed.
        """
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if self.allowed_origins:
            return "*" in self.allowed_origins or origin in self.allowed_origins
        return host is not None and urlsplit(origin).netloc == host.strip().lower()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read every variable, or raise :class:`SettingsError` naming the bad one."""
        env = _Reader(Config(environ=environ))
        database_url = env.get("DATABASE_URL", _database_url, DEFAULT_DATABASE_URL)
        redis_url = env.get("REDIS_URL", _redis_url, None)
        shared = redis_url is not None or _is_postgres(database_url)
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=env.get("REDIS_PREFIX", str, "interview:"),
            jwt_secret=_jwt_secret(env, shared=shared),
            jwt_max_ttl_s=env.get("JWT_MAX_TTL_S", _positive_int, None),
            jwt_audience=env.get("JWT_AUDIENCE", str, None),
            jwt_issuer=env.get("JWT_ISSUER", str, None),
            tick_interval_ms=env.get("TICK_INTERVAL_MS", _positive_int, 1000),
            default_grace_ms=env.get("GRACE_MS", _non_negative_int, 2000),
            allowed_origins=env.get("ALLOWED_ORIGINS", _origins, ()),
            auth_timeout_s=env.get("AUTH_TIMEOUT_S", _positive_float, 10.0),
            max_frame_bytes=env.get("MAX_FRAME_BYTES", _positive_int, 1_048_576),
            max_answer_chars=env.get("MAX_ANSWER_CHARS", _positive_int, 100_000),
            rate_per_s=env.get("RATE_PER_S", _positive_float, 20.0),
            rate_burst=env.get("RATE_BURST", _positive_int, 50),
            flood_close_s=env.get("FLOOD_CLOSE_S", _positive_float, 5.0),
            send_queue_max=env.get("SEND_QUEUE_MAX", _positive_int, 64),
            monitor_queue_max=env.get("MONITOR_QUEUE_MAX", _positive_int, 2_000),
            monitor_check_s=env.get("MONITOR_CHECK_S", _positive_float, 5.0),
            event_retention_count=env.get(
                "EVENT_RETENTION_COUNT", _positive_int, 100_000
            ),
            event_retention_s=env.get("EVENT_RETENTION_S", _positive_int, 30 * 86_400),
            keepalive_s=env.get("KEEPALIVE_S", _positive_float, 15.0),
            reserved_fds=env.get("RESERVED_FDS", _non_negative_int, 256),
            sweep_interval_ms=env.get("SWEEP_INTERVAL_MS", _positive_int, 1000),
            db_pool_max=env.get("DB_POOL_MAX", _positive_int, 10),
            db_timeout_s=env.get("DB_TIMEOUT_S", _positive_float, 5.0),
            interview_cache_max=env.get("INTERVIEW_CACHE_MAX", _positive_int, 1_000),
            interview_cache_max_bytes=env.get(
                "INTERVIEW_CACHE_MAX_BYTES", _positive_int, 32 * 1024 * 1024
            ),
            org_max_interviews=env.get("ORG_MAX_INTERVIEWS", _positive_int, 1_000),
            org_max_definition_bytes=env.get(
                "ORG_MAX_DEFINITION_BYTES", _positive_int, 100 * 1024 * 1024
            ),
            public_url=env.get("PUBLIC_URL", _http_url, None),
            log_level=env.get("LOG_LEVEL", _log_level, "INFO"),
            model_short_answer=env.get("MODEL_SHORT_ANSWER", str, None),
            model_code=env.get("MODEL_CODE", str, None),
            model_summary=env.get("MODEL_SUMMARY", str, None),
            model_api_base=env.get("MODEL_API_BASE", _http_url, None),
            grading_concurrency=env.get("GRADING_CONCURRENCY", _positive_int, 64),
            sandbox_concurrency=env.get(
                "SANDBOX_CONCURRENCY", _positive_int, _cpu_count()
            ),
            webhook_allow_private=env.get("WEBHOOK_ALLOW_PRIVATE", _flag, False),
            webhook_timeout_s=env.get("WEBHOOK_TIMEOUT_S", _positive_float, 15.0),
            webhook_concurrency=env.get("WEBHOOK_CONCURRENCY", _positive_int, 32),
            webhook_poll_ms=env.get("WEBHOOK_POLL_MS", _positive_int, 1000),
            webhook_rotation_grace_s=env.get(
                "WEBHOOK_ROTATION_GRACE_S", _non_negative_int, 24 * 3600
            ),
            webhook_max_endpoints=env.get("WEBHOOK_MAX_ENDPOINTS", _positive_int, 50),
        )


class _Reader:
    """Reads through starlette's Config; an empty value counts as unset.

    Parsers raise ``ValueError("<what was expected>")``; the reader adds the variable
    and the value that arrived.
    """

    def __init__(self, config: Config) -> None:
        self._config = config

    def raw(self, variable: str) -> str | None:
        value = self._config(variable, default=None)
        if value is None:
            return None
        return value.strip() or None

    def get(self, variable: str, parse: Callable[[str], T], default: T) -> T:
        value = self.raw(variable)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            raise SettingsError(variable, f"must be {exc}, got {value!r}") from exc


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme.startswith("postgres")


def _jwt_secret(env: _Reader, *, shared: bool) -> Secret:
    """The key, refusing the published one for a deployment (PostgreSQL or Redis)."""
    value = env.raw("JWT_SECRET")
    if shared and value in (None, DEV_JWT_SECRET):
        # A shared database or Redis means a real deployment: never sign with a
        # known key, whether left unset or copied from this file.
        problem = (
            "is required" if value is None else "must not be the development secret"
        )
        raise SettingsError(
            "JWT_SECRET",
            f"{problem} when DATABASE_URL is postgres or REDIS_URL is set "
            "(set a random value of 32+ bytes, e.g. `openssl rand -hex 32`)",
        )
    if value is None:
        return Secret(DEV_JWT_SECRET)
    length = len(value.encode())
    if length < MIN_JWT_SECRET_BYTES:
        # The value itself never goes into a message.
        raise SettingsError(
            "JWT_SECRET",
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256, got {length}",
        )
    return Secret(value)


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _positive_int(value: str) -> int:
    number = _int(value, "a positive integer")
    if number < 1:
        raise ValueError("a positive integer")
    return number


def _non_negative_int(value: str) -> int:
    number = _int(value, "a non-negative integer")
    if number < 0:
        raise ValueError("a non-negative integer")
    return number


def _int(value: str, expected: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(expected) from None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("1 or 0 (true or false)")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a positive number") from None
    # NaN and infinity would make every timer meaningless.
    if not 0 < number < float("inf"):
        raise ValueError("a positive number")
    return number


def _url(value: str, schemes: tuple[str, ...], expected: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ValueError(expected)
    return value


def _database_url(value: str) -> str:
    return _url(value, _DATABASE_SCHEMES, "a sqlite:/// or postgresql:// URL")


def _redis_url(value: str) -> str:
    return _url(value, _REDIS_SCHEMES, "a redis:// or rediss:// URL")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("an http:// or https:// URL")
    return value.rstrip("/")


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(item.strip().rstrip("/").lower() for item in value.split(","))
    for origin in origins:
        if origin != "*" and not _is_origin(origin):
            raise ValueError(
                "a comma-separated list of origins like https://example.com:8443 or *"
            )
    return origins


def _is_origin(origin: str) -> bool:
    parts = urlsplit(origin)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and not (parts.path or parts.query or parts.fragment)
    )


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
    return level
