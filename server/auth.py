"""JWT issue and verification (PRODUCT.md section 3: claims sub, name, role, org, exp).

Tokens are HS256 with the shared ``JWT_SECRET``. ``iat`` is optional (checked when
present: not in the future); ``JWT_MAX_TTL_S``, ``JWT_AUDIENCE`` and ``JWT_ISSUER`` add
checks through :class:`TokenRules`. Every PyJWT exception is translated here into
:class:`AuthError`, whose ``reason`` is safe to show to the client.

A token is checked once, when a request or a socket's ``auth`` frame arrives: a socket
whose token expires while it is open keeps working until it closes.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from starlette.datastructures import Secret
from starlette.requests import HTTPConnection

from protocol.ids import UserId
from server.errors import ServerError
from server.settings import MIN_JWT_SECRET_BYTES, Settings

ALGORITHM = "HS256"
DEFAULT_TTL_S = 3600
# Tolerates small clock differences between the machine that issued a token and
# this one, for ``exp``, ``iat`` and the lifetime.
LEEWAY_S = 5
_REQUIRED = ("sub", "name", "role", "exp")
KEPT_SECRET_BYTES = 32


class Role(enum.StrEnum):
    CANDIDATE = "candidate"
    RECRUITER = "recruiter"
    ADMIN = "admin"

    @property
    def is_staff(self) -> bool:
        return self is not Role.CANDIDATE


class AuthError(ServerError):
    """A token is missing, malformed, badly signed, expired or incomplete.

    Attributes:
        reason: what was wrong, without secrets; safe to send to the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy: its signature, and the deployment's own checks.

    Attributes:
        secret: the HS256 key (``JWT_SECRET``).
        max_ttl_s: refuse tokens living longer: ``exp - iat``, or ``exp - now``
            without ``iat`` (``JWT_MAX_TTL_S``); ``None``: no limit.
        audience, issuer: when set, ``aud`` and ``iss`` are required and must match
            (``JWT_AUDIENCE``, ``JWT_ISSUER``). A token with an ``aud`` is refused
            when no audience is set (RFC 7519 section 4.1.3).
    """

    secret: str = field(repr=False)
    max_ttl_s: int | None = None
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> TokenRules:
        return cls(
            secret=str(settings.jwt_secret),
            max_ttl_s=settings.jwt_max_ttl_s,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )


@dataclass(frozen=True, slots=True)
class Claims:
    """Who the caller is; ``org`` is set for recruiters and admins."""

    sub: UserId
    name: str
    role: Role
    org: str | None = None


def issue_token(
    secret: str,
    *,
    sub: str,
    role: str,
    name: str,
    org: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    now_s: float,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """A signed token valid for ``ttl_s`` seconds from ``now_s`` (epoch seconds).

    ``audience`` and ``issuer`` become ``aud`` and ``iss`` when given.

    Raises:
        ValueError: unknown role, empty sub or name, a staff role without ``org``,
            or a non-positive ``ttl_s``.
    """
    claims = _checked(
        {"sub": sub, "name": name, "role": role, "org": org}, error=ValueError
    )
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    payload: dict[str, object] = {
        "sub": claims.sub,
        "name": claims.name,
        "role": str(claims.role),
        "org": claims.org,
        "iat": int(now_s),
        "exp": int(now_s) + ttl_s,
    }
    if audience is not None:
        payload["aud"] = audience
    if issuer is not None:
        payload["iss"] = issuer
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(key: str | TokenRules, token: str) -> Claims:
    """The claims of a valid token; ``key`` is the secret alone, or the rules.

    Raises:
        AuthError: malformed, bad signature, expired, issued in the future, living
            longer than allowed, wrong audience or issuer, missing claims, unknown
            role.
    """
    rules = key if isinstance(key, TokenRules) else TokenRules(secret=key)
    if not token:
        raise AuthError("missing token")
    required = [*_REQUIRED]
    required += ["aud"] if rules.audience is not None else []
    required += ["iss"] if rules.issuer is not None else []
    try:
        payload = jwt.decode(
            token,
            rules.secret,
            algorithms=[ALGORITHM],
            audience=rules.audience,
            issuer=rules.issuer,
            options={"require": required, "verify_iat": True},
            leeway=LEEWAY_S,
        )
    except jwt.PyJWTError as exc:
        raise AuthError(_reason(exc)) from exc
    if rules.max_ttl_s is not None:
        _check_lifetime(payload, rules.max_ttl_s, now_s=time.time())
    return _checked(payload, error=AuthError)


def _reason(exc: jwt.PyJWTError) -> str:
    match exc:
        case jwt.ExpiredSignatureError():
            return "token expired"
        case jwt.ImmatureSignatureError():
            return "token is not valid yet"
        case jwt.InvalidSignatureError():
            return "token signature is invalid"
        case jwt.MissingRequiredClaimError():
            return f"token is missing the {exc.claim!r} claim"
        case jwt.InvalidAudienceError():
            return "token is not meant for this server (aud)"
        case jwt.InvalidIssuerError():
            return "token is not from the expected issuer (iss)"
        case jwt.DecodeError():
            return "token is malformed"
        case _:
            return f"token is invalid: {str(exc).lower()}"


def _check_lifetime(
    payload: Mapping[str, object], max_ttl_s: int, now_s: float
) -> None:
    exp = _seconds(payload, "exp")
    start = now_s if payload.get("iat") is None else _seconds(payload, "iat")
    if exp - start > max_ttl_s + LEEWAY_S:
        raise AuthError(f"token lives longer than the {max_ttl_s} s allowed")


def bearer_claims(connection: HTTPConnection, key: str | TokenRules) -> Claims:
    """The claims of the ``Authorization: Bearer <token>`` header.

    Raises:
        AuthError: no such header, another scheme, or an invalid token.
    """
    header = connection.headers.get("authorization")
    if not header:
        raise AuthError("missing Authorization: Bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected Authorization: Bearer <token>")
    return verify_token(key, token.strip())


def _seconds(payload: Mapping[str, object], claim: str) -> float:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"claim {claim!r} must be a number of seconds")
    return value


def _checked(payload: Mapping[str, object], *, error: type[Exception]) -> Claims:
    sub, name, role, org = (payload.get(key) for key in ("sub", "name", "role", "org"))
    if not isinstance(sub, str) or not sub:
        raise error("claim 'sub' must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise error("claim 'name' must be a non-empty string")
    if role not in tuple(Role):
        roles = ", ".join(Role)
        raise error(f"claim 'role' must be one of {roles}, got {str(role)[:40]!r}")
    if org is not None and (not isinstance(org, str) or not org):
        raise error("claim 'org' must be a non-empty string")
    checked_role = Role(str(role))
    if checked_role.is_staff and org is None:
        # Recruiter data is scoped to an organisation (PRODUCT.md section 3).
        raise error(f"a {checked_role} token needs an 'org' claim")
    return Claims(sub=UserId(sub), name=name, role=checked_role, org=org)


def kept_secret(path: Path, *, create: bool) -> str | None:
    """The random secret kept in ``path`` (the demo's, beside its SQLite database).

    With ``create``, a missing file is made (mode 0600) with a new secret, and one
    that holds no usable secret (empty or short: a crash while it was written by an
    earlier version, a hand edit) is replaced; without, a missing file gives ``None``.
    The file appears whole or not at all: it is written under another name, then
    linked into place.

    Raises:
        OSError: the file cannot be read or written, or (without ``create``) it
            holds no usable secret.
    """
    try:
        kept = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
        return _keep_new_secret(path, replace=False)
    if len(kept.encode()) >= MIN_JWT_SECRET_BYTES:
        return kept
    if not create:
        raise OSError(f"{path} holds no usable secret: delete it and run demo again")
    return _keep_new_secret(path, replace=True)


def _keep_new_secret(path: Path, *, replace: bool) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(KEPT_SECRET_BYTES)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secret + "\n")
        if replace:
            os.replace(draft, path)
            return secret
        try:
            os.link(draft, path)
        except FileExistsError:  # another process kept one first: use theirs
            return path.read_text(encoding="ascii").strip()
        return secret
    finally:
        draft.unlink(missing_ok=True)


def with_kept_secret(settings: Settings, *, create: bool) -> Settings:
    """Without JWT_SECRET on SQLite: the secret kept beside the database.

    ``demo`` creates it (``create``); ``serve`` and ``token`` use it once it exists,
    so that the tokens of each agree. Anything else keeps ``settings`` as they are.

    Raises:
        OSError: the file cannot be read or written.
    """
    if not settings.uses_dev_secret or settings.is_postgres:
        return settings
    path = kept_secret_path(settings.database_url)
    if path is None:  # an in-memory database lives for one run: so does its secret
        secret = secrets.token_urlsafe(KEPT_SECRET_BYTES) if create else None
    else:
        secret = kept_secret(path, create=create)
    if secret is None:
        return settings
    return dataclasses.replace(settings, jwt_secret=Secret(secret))


def kept_secret_path(database_url: str) -> Path | None:
    """Where the secret of a SQLite file database is kept: beside it, mode 0600."""
    database = urlsplit(database_url).path[1:]
    if database in ("", ":memory:"):
        return None
    return Path(database + ".jwt-secret")
