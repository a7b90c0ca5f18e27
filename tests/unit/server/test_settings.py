from __future__ import annotations

import dataclasses
import os

import pytest

from server.grading.worker import grader_config
from server.settings import DEV_JWT_SECRET, Settings, SettingsError

SECRET = "s" * 40


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_environ({})

    assert settings == dataclasses.replace(Settings(), jwt_secret=settings.jwt_secret)
    assert settings.database_url == "sqlite:///var/interview.db"
    assert settings.redis_url is None
    assert str(settings.jwt_secret) == DEV_JWT_SECRET
    assert settings.uses_dev_secret
    assert settings.tick_interval_ms == 1000
    assert settings.default_grace_ms == 2000
    assert settings.allowed_origins == ()
    assert settings.keepalive_s == 15.0
    assert settings.log_level == "INFO"
    assert settings.model_short_answer is None


def test_every_variable_is_read() -> None:
    environ = {
        "DATABASE_URL": "postgresql://app:pw@db:5432/interviews",
        "REDIS_URL": "redis://cache:6379/0",
        "JWT_SECRET": SECRET,
        "JWT_MAX_TTL_S": "86400",
        "JWT_AUDIENCE": "interviews",
        "JWT_ISSUER": "https://id.example.com",
        "TICK_INTERVAL_MS": "500",
        "GRACE_MS": "0",
        "ALLOWED_ORIGINS": "https://a.example.com, http://localhost:3000/",
        "AUTH_TIMEOUT_S": "2.5",
        "MAX_FRAME_BYTES": "2048",
        "MAX_ANSWER_CHARS": "300",
        "RATE_PER_S": "5",
        "RATE_BURST": "7",
        "FLOOD_CLOSE_S": "1.5",
        "SEND_QUEUE_MAX": "8",
        "KEEPALIVE_S": "3",
        "RESERVED_FDS": "64",
        "SWEEP_INTERVAL_MS": "250",
        "DB_POOL_MAX": "4",
        "DB_TIMEOUT_S": "2.5",
        "INTERVIEW_CACHE_MAX": "50",
        "INTERVIEW_CACHE_MAX_BYTES": "1048576",
        "ORG_MAX_INTERVIEWS": "20",
        "ORG_MAX_DEFINITION_BYTES": "2097152",
        "PUBLIC_URL": "https://interviews.example.com/",
        "LOG_LEVEL": "debug",
        "MODEL_SHORT_ANSWER": "openai/gpt-4o-mini",
        "MODEL_CODE": "anthropic/claude-sonnet",
        "MODEL_SUMMARY": "ollama/llama3",
        "MODEL_API_BASE": "http://localhost:11434",
        "WEBHOOK_ALLOW_PRIVATE": "yes",
        "WEBHOOK_TIMEOUT_S": "2.5",
        "WEBHOOK_CONCURRENCY": "4",
        "WEBHOOK_POLL_MS": "50",
        "WEBHOOK_ROTATION_GRACE_S": "0",
        "WEBHOOK_MAX_ENDPOINTS": "3",
    }

    settings = Settings.from_environ(environ)

    assert settings == Settings(
        database_url="postgresql://app:pw@db:5432/interviews",
        redis_url="redis://cache:6379/0",
        jwt_secret=settings.jwt_secret,
        jwt_max_ttl_s=86400,
        jwt_audience="interviews",
        jwt_issuer="https://id.example.com",
        tick_interval_ms=500,
        default_grace_ms=0,
        allowed_origins=("https://a.example.com", "http://localhost:3000"),
        auth_timeout_s=2.5,
        max_frame_bytes=2048,
        max_answer_chars=300,
        rate_per_s=5.0,
        rate_burst=7,
        flood_close_s=1.5,
        send_queue_max=8,
        keepalive_s=3.0,
        reserved_fds=64,
        sweep_interval_ms=250,
        db_pool_max=4,
        db_timeout_s=2.5,
        interview_cache_max=50,
        interview_cache_max_bytes=1_048_576,
        org_max_interviews=20,
        org_max_definition_bytes=2_097_152,
        public_url="https://interviews.example.com",
        log_level="DEBUG",
        model_short_answer="openai/gpt-4o-mini",
        model_code="anthropic/claude-sonnet",
        model_summary="ollama/llama3",
        model_api_base="http://localhost:11434",
        webhook_allow_private=True,
        webhook_timeout_s=2.5,
        webhook_concurrency=4,
        webhook_poll_ms=50,
        webhook_rotation_grace_s=0,
        webhook_max_endpoints=3,
    )
    assert str(settings.jwt_secret) == SECRET
    assert not settings.uses_dev_secret
    assert settings.is_postgres


def test_sandbox_runs_at_once_default_to_the_cpus_and_reach_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 6)

    assert Settings().sandbox_concurrency == 6
    assert Settings.from_environ({}).sandbox_concurrency == 6
    configured = Settings.from_environ({"SANDBOX_CONCURRENCY": "3"})
    assert configured.sandbox_concurrency == 3
    assert grader_config(configured).sandbox_concurrency == 3


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)],
)
def test_webhook_allow_private_is_a_flag(value: str, allowed: bool) -> None:
    settings = Settings.from_environ({"WEBHOOK_ALLOW_PRIVATE": value})

    assert settings.webhook_allow_private is allowed
    assert Settings.from_environ({}).webhook_allow_private is False


def test_empty_values_count_as_unset() -> None:
    settings = Settings.from_environ({"REDIS_URL": "", "TICK_INTERVAL_MS": "  "})

    assert settings.redis_url is None
    assert settings.tick_interval_ms == 1000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://db/x", "sqlite:/// or postgresql://"),
        ("REDIS_URL", "http://cache", "redis://"),
        ("JWT_MAX_TTL_S", "0", "positive integer"),
        ("TICK_INTERVAL_MS", "fast", "positive integer"),
        ("TICK_INTERVAL_MS", "0", "positive integer"),
        ("GRACE_MS", "-1", "non-negative integer"),
        ("ALLOWED_ORIGINS", "example.com", "origins"),
        ("ALLOWED_ORIGINS", "https://a.example.com/path", "origins"),
        ("AUTH_TIMEOUT_S", "nan", "positive number"),
        ("MAX_FRAME_BYTES", "1.5", "positive integer"),
        ("MAX_ANSWER_CHARS", "-3", "positive integer"),
        ("RATE_PER_S", "0", "positive number"),
        ("RATE_BURST", "x", "positive integer"),
        ("FLOOD_CLOSE_S", "inf", "positive number"),
        ("SEND_QUEUE_MAX", "0", "positive integer"),
        ("KEEPALIVE_S", "-1", "positive number"),
        ("SWEEP_INTERVAL_MS", "1s", "positive integer"),
        ("DB_POOL_MAX", "ten", "positive integer"),
        ("DB_TIMEOUT_S", "0", "positive number"),
        ("INTERVIEW_CACHE_MAX", "0", "positive integer"),
        ("INTERVIEW_CACHE_MAX_BYTES", "32MB", "positive integer"),
        ("ORG_MAX_INTERVIEWS", "-1", "positive integer"),
        ("ORG_MAX_DEFINITION_BYTES", "lots", "positive integer"),
        ("PUBLIC_URL", "interviews.example.com", "http:// or https://"),
        ("LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("MODEL_API_BASE", "localhost:11434", "http:// or https://"),
        ("SANDBOX_CONCURRENCY", "0", "positive integer"),
        ("WEBHOOK_ALLOW_PRIVATE", "maybe", "1 or 0"),
        ("WEBHOOK_TIMEOUT_S", "0", "positive number"),
        ("WEBHOOK_CONCURRENCY", "0", "positive integer"),
        ("WEBHOOK_POLL_MS", "1s", "positive integer"),
        ("WEBHOOK_ROTATION_GRACE_S", "-1", "non-negative integer"),
        ("WEBHOOK_MAX_ENDPOINTS", "0", "positive integer"),
    ],
)
def test_malformed_value_names_the_variable_and_what_was_expected(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({variable: value})

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable} must be")
    assert expected in str(caught.value)
    assert repr(value) in str(caught.value)


def test_postgres_without_jwt_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET is required"):
        Settings.from_environ({"DATABASE_URL": "postgresql://db/interviews"})


def test_redis_without_jwt_secret_is_refused() -> None:
    # REDIS_URL means several processes (serve, worker): a deployment.
    with pytest.raises(SettingsError, match="JWT_SECRET is required"):
        Settings.from_environ({"REDIS_URL": "redis://cache:6379/0"})


@pytest.mark.parametrize(
    "environ",
    [
        {"DATABASE_URL": "postgresql://db/interviews"},
        {"REDIS_URL": "redis://cache:6379/0"},
    ],
)
def test_the_published_development_secret_is_refused_for_a_deployment(
    environ: dict[str, str],
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ(environ | {"JWT_SECRET": DEV_JWT_SECRET})

    assert caught.value.variable == "JWT_SECRET"
    assert "must not be the development secret" in str(caught.value)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]
)
def test_the_development_secret_may_listen_on_loopback(host: str) -> None:
    Settings.from_environ({}).check_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "example.com"])
def test_the_development_secret_may_not_listen_elsewhere(host: str) -> None:
    for settings in (
        Settings.from_environ({}),
        Settings.from_environ({"JWT_SECRET": DEV_JWT_SECRET}),
    ):
        with pytest.raises(SettingsError) as caught:
            settings.check_host(host)
        assert caught.value.variable == "JWT_SECRET"
        assert str(caught.value).startswith("JWT_SECRET is required to listen on")


def test_a_configured_secret_may_listen_anywhere() -> None:
    Settings.from_environ({"JWT_SECRET": SECRET}).check_host("0.0.0.0")


def test_short_jwt_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({"JWT_SECRET": "hunter2"})

    assert caught.value.variable == "JWT_SECRET"
    assert "at least 32 bytes" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_is_hidden_from_repr() -> None:
    settings = Settings.from_environ({"JWT_SECRET": SECRET})

    assert SECRET not in repr(settings)


def test_no_origin_header_is_always_allowed() -> None:
    assert Settings().origin_allowed(None, "localhost:8000")
    assert Settings(allowed_origins=("https://a.example",)).origin_allowed(None, None)


def test_default_allows_only_the_same_origin() -> None:
    settings = Settings()

    assert settings.origin_allowed("http://localhost:8000", "localhost:8000")
    assert settings.origin_allowed("https://Example.com", "example.com")
    assert not settings.origin_allowed("http://evil.example", "localhost:8000")
    assert not settings.origin_allowed("http://localhost:9000", "localhost:8000")
    assert not settings.origin_allowed("http://localhost:8000", None)


def test_configured_origins_replace_the_same_origin_rule() -> None:
    settings = Settings(allowed_origins=("https://app.example.com",))

    assert settings.origin_allowed("https://app.example.com/", "api.example.com")
    assert not settings.origin_allowed("http://localhost:8000", "localhost:8000")


def test_star_allows_every_origin() -> None:
    settings = Settings.from_environ({"ALLOWED_ORIGINS": "*"})

    assert settings.origin_allowed("https://anywhere.example", "localhost:8000")
