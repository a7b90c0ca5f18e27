"""Authentication and origin checks of the candidate socket (PROTOCOL.md section 1).

A missing, late, malformed, forged or expired token gets ``unauthenticated`` and
close 4401; a token of another role, or a browser page from a foreign origin, gets
close 4403. Each refused client leaves everyone else served.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from server.auth import issue_token
from tests.e2e._client import Candidate
from tests.e2e.conftest import (
    SECRET,
    Server,
    assert_serves_others,
    make_settings,
    served,
)

pytestmark = pytest.mark.e2e

EVIL = "http://evil.example"


def _token(secret: str = SECRET, *, now_s: float | None = None) -> str:
    return issue_token(
        secret,
        sub="alice",
        role="candidate",
        name="Alice",
        ttl_s=3600,
        now_s=time.time() if now_s is None else now_s,
    )


async def test_a_client_that_does_not_authenticate_in_time_is_closed_with_4401(
    database_url: str,
) -> None:
    async with served(make_settings(database_url, auth_timeout_s=0.5)) as server:
        silent = await Candidate.open(server.url)
        began = time.monotonic()
        frames, code = await silent.frames_until_close()
        assert code == 4401
        assert time.monotonic() - began >= 0.4
        assert all(frame["type"] == "error" for frame in frames), frames
        await assert_serves_others(server)


async def test_a_first_frame_that_is_not_auth_is_unauthenticated_then_4401(
    server: Server,
) -> None:
    client = await Candidate.open(server.url)
    await client.send({"type": "ping", "client_time": 1})
    frames, code = await client.frames_until_close()
    assert [frame.get("code") for frame in frames] == ["unauthenticated"]
    assert code == 4401
    await assert_serves_others(server)


async def test_a_first_frame_that_is_not_json_is_unauthenticated_then_4401(
    server: Server,
) -> None:
    client = await Candidate.open(server.url)
    await client.send_raw("hello?")
    frames, code = await client.frames_until_close()
    assert [frame.get("code") for frame in frames] == ["unauthenticated"]
    assert code == 4401
    await assert_serves_others(server)


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "empty": lambda: "",
    "malformed": lambda: "not.a.jwt",
    "garbage": lambda: "x" * 300,
    "forged": lambda: _token("another-secret-that-is-32-bytes-long!!"),
    "expired": lambda: _token(now_s=time.time() - 7200),
    "unsigned": lambda: (
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
        "eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBIiwicm9sZSI6ImNhbmRpZGF0ZSJ9."
    ),
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_bad_token_is_unauthenticated_then_4401(
    server: Server, make: Callable[[], str]
) -> None:
    client = await Candidate.open(server.url)
    await client.send({"type": "auth", "token": make()})
    frames, code = await client.frames_until_close()
    assert [frame.get("code") for frame in frames] == ["unauthenticated"]
    assert SECRET not in frames[0]["message"]
    assert code == 4401
    await assert_serves_others(server)


async def test_a_token_with_only_the_claims_of_the_contract_is_accepted(
    server: Server,
) -> None:
    # PRODUCT.md section 3: sub, name, role, org, exp; an issuer may leave out iat.
    claims = {"sub": "alice", "name": "Alice", "role": "candidate"}
    token = jwt.encode(claims | {"exp": int(time.time()) + 600}, SECRET, "HS256")
    client = await Candidate.open(server.url)
    hello = await client.login(token)
    assert hello["user"] == {"id": "alice", "name": "Alice", "role": "candidate"}
    await client.ping()


async def test_a_token_beyond_the_configured_rules_is_unauthenticated_then_4401(
    database_url: str,
) -> None:
    settings = make_settings(
        database_url, jwt_max_ttl_s=600, jwt_audience="interviews", jwt_issuer="idp"
    )
    now = int(time.time())
    claims = {"sub": "alice", "name": "Alice", "role": "candidate", "exp": now + 600}
    good = claims | {"aud": "interviews", "iss": "idp"}
    async with served(settings) as server:
        for bad in (claims, good | {"exp": now + 7200}, good | {"aud": "billing"}):
            client = await Candidate.open(server.url)
            await client.send({"type": "auth", "token": jwt.encode(bad, SECRET)})
            frames, code = await client.frames_until_close()
            assert [frame.get("code") for frame in frames] == ["unauthenticated"]
            assert code == 4401
        client = await Candidate.open(server.url)
        hello = await client.login(jwt.encode(good, SECRET))
        assert hello["user"]["id"] == "alice"


async def test_an_auth_frame_without_a_token_is_unauthenticated_then_4401(
    server: Server,
) -> None:
    client = await Candidate.open(server.url)
    await client.send({"type": "auth"})
    frames, code = await client.frames_until_close()
    assert [frame.get("code") for frame in frames] == ["unauthenticated"]
    assert code == 4401


@pytest.mark.parametrize("role", ["recruiter", "admin"])
async def test_a_staff_token_on_the_candidate_socket_is_closed_with_4403(
    server: Server, role: str
) -> None:
    client = await Candidate.open(server.url)
    await client.send({"type": "auth", "token": server.token("rita", role=role)})
    frames, code = await client.frames_until_close()
    assert (frames, code) == ([], 4403)
    await assert_serves_others(server)


async def test_a_foreign_origin_is_closed_with_4403(server: Server) -> None:
    client = await Candidate.open(server.url, origin=EVIL)
    frames, code = await client.frames_until_close()
    assert (frames, code) == ([], 4403)
    await assert_serves_others(server)


async def test_the_servers_own_origin_and_no_origin_are_allowed(
    server: Server,
) -> None:
    same = await server.candidate(origin=server.http)
    assert same.hello["user"]["id"] == "alice"
    await same.ping()
    none = await server.candidate("bob")
    assert none.hello["user"]["id"] == "bob"
    await none.ping()


async def test_allowed_origins_admits_a_listed_origin_and_no_other(
    database_url: str,
) -> None:
    app = "https://app.example"
    settings = make_settings(database_url, allowed_origins=(app,))
    async with served(settings) as server:
        listed = await server.candidate(origin=app)
        await listed.ping()

        for origin in (EVIL, server.http):
            refused = await Candidate.open(server.url, origin=origin)
            assert await refused.closed() == 4403
        await assert_serves_others(server)
