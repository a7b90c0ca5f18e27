"""JWT issue and verification (PRODUCT.md section 3: claims sub, name, role, org, exp).

Tokens are HS256 with the shared ``JWT_SECRET``. Every PyJWT exception is translated
here into :class:`AuthError`, whose ``reason`` is safe to show to the client.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from starlette.requests import HTTPConnection

from protocol.ids import UserId
from server.errors import ServerError

ALGORITHM = "HS256"
DEFAULT_TTL_S = 3600
# Tolerates small clock differences between the machine that issued a token and
# this one, for both ``exp`` and ``iat``.
LEEWAY_S = 5
_REQUIRED = ("sub", "name", "role", "exp", "iat")


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
) -> str:
    """A signed token valid for ``ttl_s`` seconds from ``now_s`` (epoch seconds).

    Raises:
        ValueError: unknown role, empty sub or name, a staff role without ``org``,
            or a non-positive ``ttl_s``.
    """
    claims = _checked(
        {"sub": sub, "name": name, "role": role, "org": org}, error=ValueError
    )
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    payload = {
        "sub": claims.sub,
        "name": claims.name,
        "role": str(claims.role),
        "org": claims.org,
        "iat": int(now_s),
        "exp": int(now_s) + ttl_s,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Claims:
    """The claims of a valid token.

    Raises:
        AuthError: malformed, bad signature, expired, missing claims, unknown role.
    """
    if not token:
        raise AuthError("missing token")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": list(_REQUIRED)},
            leeway=LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature is invalid") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token is missing the {exc.claim!r} claim") from exc
    except jwt.DecodeError as exc:
        raise AuthError("token is malformed") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is invalid: {str(exc).lower()}") from exc
    return _checked(payload, error=AuthError)


def bearer_claims(connection: HTTPConnection, secret: str) -> Claims:
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
    return verify_token(secret, token.strip())


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
