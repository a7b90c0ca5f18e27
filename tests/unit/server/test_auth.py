from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest
from starlette.requests import Request

from protocol.ids import UserId
from server.auth import (
    AuthError,
    Claims,
    Role,
    TokenRules,
    bearer_claims,
    issue_token,
    kept_secret,
    verify_token,
    with_kept_secret,
)
from server.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def _now_s() -> int:
    """The wall clock as a test runs: verify_token reads it then, not at import."""
    return int(time.time())


def _token(**overrides: object) -> str:
    now_s = _now_s()
    claims: dict[str, object] = {
        "sub": "u1",
        "name": "Ada",
        "role": "candidate",
        "org": None,
        "iat": now_s,
        "exp": now_s + 600,
    }
    claims.update(overrides)
    present = {key: value for key, value in claims.items() if value is not ...}
    return jwt.encode(present, SECRET, algorithm="HS256")


def _request(authorization: str | None) -> Request:
    headers = (
        [] if authorization is None else [(b"authorization", authorization.encode())]
    )
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_issued_token_verifies_to_the_same_claims() -> None:
    now_s = _now_s()
    token = issue_token(
        SECRET, sub="r1", role="recruiter", name="Grace", org="acme", now_s=now_s
    )

    assert verify_token(SECRET, token) == Claims(
        sub=UserId("r1"), name="Grace", role=Role.RECRUITER, org="acme"
    )


def test_issued_token_carries_iat_and_exp_from_now_and_ttl() -> None:
    now_s = _now_s()
    token = issue_token(
        SECRET, sub="c1", role="candidate", name="Ada", ttl_s=60, now_s=now_s
    )

    # The claims as written: this checks what was issued, not whether it is still valid.
    payload = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert payload["iat"] == now_s
    assert payload["exp"] == now_s + 60
    assert payload["org"] is None


def test_expired_token_is_refused() -> None:
    now_s = _now_s()
    an_hour_ago = now_s - 3600
    token = issue_token(
        SECRET, sub="c1", role="candidate", name="Ada", ttl_s=60, now_s=an_hour_ago
    )

    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, token)


def test_token_signed_with_another_secret_is_refused() -> None:
    now_s = _now_s()
    forged = issue_token(
        "another-secret-that-is-long-enough-too!!",
        sub="c1",
        role="admin",
        name="Mallory",
        org="acme",
        now_s=now_s,
    )

    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, forged)


def test_unsigned_token_is_refused() -> None:
    header, payload, _ = _token().split(".")
    unsigned = jwt.encode(
        jwt.decode(_token(), SECRET, algorithms=["HS256"]), key=None, algorithm="none"
    )

    with pytest.raises(AuthError):
        verify_token(SECRET, unsigned)
    with pytest.raises(AuthError):
        verify_token(SECRET, f"{header}.{payload}.")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(SECRET, token)


@pytest.mark.parametrize("claim", ["sub", "name", "role", "exp"])
def test_token_missing_a_claim_is_refused(claim: str) -> None:
    with pytest.raises(AuthError, match=claim):
        verify_token(SECRET, _token(**{claim: ...}))


def test_a_token_with_only_the_claims_of_the_contract_is_accepted() -> None:
    # PRODUCT.md section 3 names sub, name, role, org and exp: iat is optional.
    token = _token(iat=...)

    assert verify_token(SECRET, token) == Claims(
        sub=UserId("u1"), name="Ada", role=Role.CANDIDATE
    )


def test_a_token_issued_in_the_future_is_refused_beyond_the_leeway() -> None:
    now_s = _now_s()
    assert verify_token(SECRET, _token(iat=now_s + 2)).sub == "u1"
    with pytest.raises(AuthError, match="not valid yet"):
        verify_token(SECRET, _token(iat=now_s + 60))
    with pytest.raises(AuthError, match="iat"):
        verify_token(SECRET, _token(iat="yesterday"))


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    now_s = _now_s()
    rules = TokenRules(SECRET, max_ttl_s=600)
    day = now_s + 86400

    assert verify_token(rules, _token()).sub == "u1"
    assert verify_token(rules, _token(iat=..., exp=now_s + 600)).sub == "u1"
    with pytest.raises(AuthError, match="600 s"):
        verify_token(rules, _token(exp=day))
    with pytest.raises(AuthError, match="600 s"):
        verify_token(rules, _token(iat=..., exp=day))
    # A token issued long ago for long: its lifetime counts, not what is left.
    with pytest.raises(AuthError, match="600 s"):
        verify_token(rules, _token(iat=now_s - 86000, exp=now_s + 400))


def test_an_audience_and_an_issuer_once_set_are_required_and_checked() -> None:
    rules = TokenRules(SECRET, audience="interviews", issuer="https://id.example")

    good = _token(aud="interviews", iss="https://id.example")
    assert verify_token(rules, good).sub == "u1"
    assert verify_token(rules, _token(aud=["other", "interviews"], iss=rules.issuer))
    both = {"aud": "interviews", "iss": "https://id.example"}
    for claim in both:
        with pytest.raises(AuthError, match=f"missing the '{claim}' claim"):
            verify_token(rules, _token(**(both | {claim: ...})))
    with pytest.raises(AuthError, match="aud"):
        verify_token(rules, _token(aud="billing", iss=rules.issuer))
    with pytest.raises(AuthError, match="iss"):
        verify_token(rules, _token(aud="interviews", iss="https://evil.example"))


def test_a_token_for_an_audience_is_refused_where_none_is_configured() -> None:
    with pytest.raises(AuthError, match="aud"):
        verify_token(SECRET, _token(aud="billing"))


def test_issued_tokens_carry_the_audience_and_issuer_given() -> None:
    rules = TokenRules(SECRET, max_ttl_s=60, audience="interviews", issuer="cli")
    token = issue_token(
        SECRET, sub="c1", role="candidate", name="Ada", ttl_s=60, now_s=time.time(),
        audience="interviews", issuer="cli",
    )  # fmt: skip

    assert verify_token(rules, token).sub == "c1"


def test_the_rules_come_from_the_settings_and_hide_the_secret() -> None:
    settings = Settings.from_environ(
        {
            "JWT_SECRET": SECRET,
            "JWT_MAX_TTL_S": "900",
            "JWT_AUDIENCE": "interviews",
            "JWT_ISSUER": "https://id.example",
        }
    )

    rules = TokenRules.of(settings)

    assert rules == TokenRules(SECRET, 900, "interviews", "https://id.example")
    assert SECRET not in repr(rules)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("sub", ""), ("sub", 7), ("name", ""), ("name", ["Ada"]), ("org", 3)],
)
def test_token_with_a_mistyped_claim_is_refused(claim: str, value: object) -> None:
    with pytest.raises(AuthError, match=claim):
        verify_token(SECRET, _token(**{claim: value}))


def test_token_with_an_unknown_role_is_refused() -> None:
    with pytest.raises(AuthError, match="role"):
        verify_token(SECRET, _token(role="superuser"))


@pytest.mark.parametrize("role", ["recruiter", "admin"])
def test_staff_token_without_org_is_refused(role: str) -> None:
    with pytest.raises(AuthError, match="org"):
        verify_token(SECRET, _token(role=role))


def test_issuing_with_a_wrong_role_or_ttl_is_a_value_error() -> None:
    now_s = _now_s()
    with pytest.raises(ValueError, match="role"):
        issue_token(SECRET, sub="x", role="root", name="X", now_s=now_s)
    with pytest.raises(ValueError, match="org"):
        issue_token(SECRET, sub="x", role="recruiter", name="X", now_s=now_s)
    with pytest.raises(ValueError, match="ttl_s"):
        issue_token(SECRET, sub="x", role="candidate", name="X", ttl_s=0, now_s=now_s)


def test_bearer_header_yields_the_claims() -> None:
    request = _request(f"Bearer {_token()}")

    assert bearer_claims(request, SECRET) == Claims(
        sub=UserId("u1"), name="Ada", role=Role.CANDIDATE
    )


@pytest.mark.parametrize(
    "header", [None, "", "Basic dXNlcjpwdw==", "Bearer ", "Bearer"]
)
def test_missing_or_non_bearer_authorization_is_refused(header: str | None) -> None:
    with pytest.raises(AuthError, match="Bearer"):
        bearer_claims(_request(header), SECRET)


def test_a_kept_secret_is_made_once_private_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "demo.db.jwt-secret"

    assert kept_secret(path, create=False) is None
    made = kept_secret(path, create=True)
    assert made is not None and len(made.encode()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kept_secret(path, create=True) == made
    assert kept_secret(path, create=False) == made


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_a_kept_secret_that_is_empty_or_short_is_refused_or_replaced(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "interview.db.jwt-secret"
    path.write_text(content)

    with pytest.raises(OSError, match="no usable secret"):
        kept_secret(path, create=False)
    made = kept_secret(path, create=True)
    assert made is not None and len(made) >= 32
    assert kept_secret(path, create=False) == made
    assert path.stat().st_mode & 0o777 == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


def test_settings_without_a_secret_take_the_kept_one(tmp_path: Path) -> None:
    local = Settings(database_url=f"sqlite:///{tmp_path}/x.db")
    memory = Settings(database_url="sqlite:///:memory:")
    configured = Settings.from_environ({"JWT_SECRET": SECRET})

    assert with_kept_secret(local, create=False) == local
    kept = with_kept_secret(local, create=True)
    assert not kept.uses_dev_secret
    assert str(kept.jwt_secret) == (tmp_path / "x.db.jwt-secret").read_text().strip()
    again = with_kept_secret(local, create=False)
    assert str(again.jwt_secret) == str(kept.jwt_secret)  # Secret has no ==
    assert with_kept_secret(memory, create=False) == memory
    assert not with_kept_secret(memory, create=True).uses_dev_secret
    assert with_kept_secret(configured, create=True) == configured
