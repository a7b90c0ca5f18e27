"""Leases: how a client that lost its connection gets its attempt back at once
(PROTOCOL.md section 1, ``resume{lease}``).

Every attach increments the attempt's owner epoch (the database fence,
``sessions.owner_epoch``), so an :class:`Attachment` (attempt, epoch, candidate)
names one attach, and "nobody attached since" means the attempt's owner epoch is
still the one an attachment names. Its lease, sent in every ``state``, is an HMAC
of the attachment under a key derived from the server's secret: opaque to the
client, unguessable by anyone else, bound to the candidate, and naming the current
attachment exactly until the next attach moves the epoch on.

A lease is a capability, not a token: it only lets its holder do at once what
``resume{takeover:true}`` does after a prompt, and only while nobody attached since.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

KEY_CONTEXT = b"interview-server attachment lease v1"
"""What the lease key is derived for, so that it is never the token secret itself
(a lease is then never a token signature, nor the other way round)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attach of ``candidate_id`` to attempt ``session_id`` at owner ``epoch``."""

    session_id: str
    epoch: int
    candidate_id: str


def derive_key(secret: str) -> bytes:
    """The key that signs leases, derived from the server's secret (``JWT_SECRET``):
    every instance sharing the secret issues and accepts the same leases."""
    return hmac.new(secret.encode(), KEY_CONTEXT, hashlib.sha256).digest()


def issue(key: bytes, attachment: Attachment) -> str:
    """The lease of ``attachment``: 43 URL-safe characters."""
    fields = [attachment.session_id, attachment.epoch, attachment.candidate_id]
    message = json.dumps(fields, separators=(",", ":")).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def names(key: bytes, attachment: Attachment, lease: str) -> bool:
    """Whether ``lease`` (any string a client sent) is the lease of ``attachment``;
    compared in constant time."""
    expected = issue(key, attachment).encode()
    return hmac.compare_digest(expected, lease.encode("utf-8", "surrogatepass"))
