"""Signing secrets and signatures (Standard Webhooks, "Signature scheme").

A secret is ``whsec_`` + base64 of 24 to 64 random bytes (this server makes 32).
A signature is ``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``,
keyed with the secret's bytes; ``webhook-signature`` lists one per key in use,
space-delimited. During a rotation the previous secret keeps signing beside the new
one until its grace ends, so a receiver verifies with either (zero-downtime
rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.ids import Millis

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
"""Random bytes in a secret this server makes."""
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
VERSION = "v1"


def format_secret(key: bytes) -> str:
    """The secret shown to the endpoint's owner for ``key`` (random bytes).

    Raises:
        ValueError: ``key`` is shorter than 24 or longer than 64 bytes.
    """
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        expected = f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
        raise ValueError(f"expected a key of {expected}, got {len(key)}")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret.

    Raises:
        ValueError: no ``whsec_`` prefix, not base64, or a key of the wrong size.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"expected a secret starting with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("expected base64 after 'whsec_'") from exc
    format_secret(key)  # checks the size
    return key


def sign(key: bytes, message_id: str, timestamp_s: int, body: str) -> str:
    """``v1,<base64 signature>`` of one message.

    Raises:
        ValueError: ``message_id`` contains a ``.``, which would let one signed
            content pass for another.
    """
    if "." in message_id:
        raise ValueError(f"expected a message id without '.', got {message_id!r}")
    content = f"{message_id}.{timestamp_s}.{body}".encode()
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(
    keys: Sequence[bytes], message_id: str, timestamp_s: int, body: str
) -> dict[str, str]:
    """The ``webhook-*`` headers of one attempt, signed with every key in ``keys``."""
    signatures = " ".join(sign(key, message_id, timestamp_s, body) for key in keys)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signatures,
    }


@dataclass(frozen=True, slots=True)
class Secrets:
    """An endpoint's secrets: the current one, and the one it replaced while that
    one's grace lasts (until ``previous_until``, exclusive)."""

    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)
    previous_until: Millis | None = None

    def signing_keys(self, now: Millis) -> tuple[bytes, ...]:
        """The keys that sign at ``now``: the current one first."""
        keys = [secret_key(self.current)]
        if (
            self.previous is not None
            and self.previous_until is not None
            and now < self.previous_until
        ):
            keys.append(secret_key(self.previous))
        return tuple(keys)

    def rotated(self, new: str, *, now: Millis, grace_ms: int) -> Secrets:
        """``new`` becomes current; the current one signs beside it for
        ``grace_ms`` (0: not at all). A secret still in an earlier grace is dropped."""
        if grace_ms <= 0:
            return Secrets(current=new)
        return Secrets(
            current=new, previous=self.current, previous_until=now + grace_ms
        )
