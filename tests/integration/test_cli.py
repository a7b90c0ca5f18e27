"""The `interview-server` CLI, run in-process against a real database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from protocol.ids import InterviewId, UserId
from server.__main__ import main
from server.auth import TokenRules, kept_secret, kept_secret_path, verify_token
from server.settings import DEV_JWT_SECRET
from server.storage.attempts import DatabaseStorage
from server.storage.database import Database

pytestmark = pytest.mark.integration

SECRET = "cli-test-secret-that-is-long-enough-32"
EXAMPLE = Path(__file__).parents[2] / "examples" / "full-stack-developer.json"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")


def test_token_prints_a_jwt_that_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["token", "--sub", "c1", "--role", "candidate", "--name", "Cee"])

    assert code == 0
    claims = verify_token(SECRET, capsys.readouterr().out.strip())
    assert (claims.sub, claims.name, claims.role) == ("c1", "Cee", "candidate")


def test_token_carries_the_configured_audience_and_issuer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_AUDIENCE", "interviews")
    monkeypatch.setenv("JWT_ISSUER", "https://id.example")
    monkeypatch.setenv("JWT_MAX_TTL_S", "600")

    args = ["token", "--sub", "c1", "--role", "candidate", "--name", "C"]
    code = main([*args, "--ttl", "600"])

    assert code == 0
    rules = TokenRules(SECRET, 600, "interviews", "https://id.example")
    assert verify_token(rules, capsys.readouterr().out.strip()).sub == "c1"


def test_a_token_longer_than_the_maximum_lifetime_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_MAX_TTL_S", "600")

    code = main(["token", "--sub", "c1", "--role", "candidate", "--name", "C"])

    assert code == 2
    assert "JWT_MAX_TTL_S" in capsys.readouterr().err


def test_token_without_a_secret_signs_with_the_one_the_demo_keeps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = f"sqlite:///{tmp_path}/demo.db"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.delenv("REDIS_URL", raising=False)  # the loopback demo has none
    args = ["token", "--sub", "c1", "--role", "candidate", "--name", "C"]

    assert main(args) == 0  # nothing kept yet: the development secret, loopback only
    assert verify_token(DEV_JWT_SECRET, capsys.readouterr().out.strip())
    path = kept_secret_path(database_url)
    assert path == tmp_path / "demo.db.jwt-secret"
    kept = kept_secret(path, create=True)
    assert kept is not None
    assert main(args) == 0
    assert verify_token(kept, capsys.readouterr().out.strip()).sub == "c1"


@pytest.mark.parametrize("secret", [None, DEV_JWT_SECRET])
def test_the_worker_refuses_the_development_secret(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    secret: str | None,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/worker.db")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    if secret is None:
        monkeypatch.delenv("JWT_SECRET")
    else:
        monkeypatch.setenv("JWT_SECRET", secret)

    assert main(["worker"]) == 2
    assert "configuration error: JWT_SECRET" in capsys.readouterr().err


def test_a_recruiter_token_needs_an_org(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["token", "--sub", "r", "--role", "recruiter", "--name", "R"])

    assert code == 2
    assert "org" in capsys.readouterr().err


def test_an_unknown_role_is_a_usage_error() -> None:
    assert main(["token", "--sub", "x", "--role", "boss", "--name", "X"]) == 2


def test_migrate_can_run_twice() -> None:
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0


def test_import_creates_the_interview_and_invites(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code = main(
        ["import", str(EXAMPLE), "--org", "acme", "--invite", "c1:Cee:c1@example.com"]
    )

    assert code == 0
    interview_id = InterviewId(capsys.readouterr().out.strip())

    async def check() -> None:
        storage = DatabaseStorage(Database(database_url))
        await storage.connect()
        try:
            record = await storage.get_interview(interview_id)
            assert record is not None and record.org == "acme"
            assert len(record.definition.questions) == 6
            assert await storage.is_invited(interview_id, UserId("c1"))
        finally:
            await storage.disconnect()

    asyncio.run(check())


def test_import_of_an_invalid_file_names_every_wrong_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = json.loads(EXAMPLE.read_text())
    definition["questions"][1]["points"] = -1
    del definition["questions"][0]["correct_answer"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(definition))

    assert main(["import", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "questions.1.points" in error and "questions.0.correct_answer" in error


def test_import_of_a_file_nested_too_deeply_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)

    assert main(["import", str(deep)]) == 2
    assert "deep.json is not valid JSON" in capsys.readouterr().err


def test_import_of_a_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_a_malformed_setting_stops_with_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICK_INTERVAL_MS", "soon")

    assert main(["migrate"]) == 2
    assert "TICK_INTERVAL_MS" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ["serve", "migrate", "token", "import", "demo", "worker"]:
        assert command in out
