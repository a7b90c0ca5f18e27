from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from protocol.webhooks.signature import (
    Secrets,
    format_secret,
    headers,
    secret_key,
    sign,
)

KEY = bytes(range(32))
OTHER = bytes(range(100, 132))
BODY = '{"type":"session.completed","timestamp":"2027-01-15T08:00:00.000Z","data":{}}'


def test_a_secret_is_whsec_and_base64_of_its_key() -> None:
    secret = format_secret(KEY)

    assert secret.startswith("whsec_")
    assert base64.b64decode(secret.removeprefix("whsec_")) == KEY
    assert secret_key(secret) == KEY


@pytest.mark.parametrize("size", [23, 65])
def test_a_key_outside_24_to_64_bytes_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="24 to 64 bytes"):
        format_secret(b"k" * size)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("sk_abc", "starting with 'whsec_'"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_a_malformed_secret_is_refused(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secret_key(secret)


def test_the_signature_is_the_reference_librarys() -> None:
    reference = Webhook(format_secret(KEY)).sign(
        "msg_1", datetime.fromtimestamp(1_800_000_000, tz=UTC), BODY
    )

    assert sign(KEY, "msg_1", 1_800_000_000, BODY) == reference


def test_a_message_id_with_a_dot_is_never_signed() -> None:
    with pytest.raises(ValueError, match="without '.'"):
        sign(KEY, "msg.1", 1, BODY)


def test_the_headers_carry_one_signature_per_key_space_delimited() -> None:
    sent = headers([KEY, OTHER], "msg_1", 1_800_000_000, BODY)

    assert sent["webhook-id"] == "msg_1"
    assert sent["webhook-timestamp"] == "1800000000"
    assert sent["webhook-signature"].split(" ") == [
        sign(KEY, "msg_1", 1_800_000_000, BODY),
        sign(OTHER, "msg_1", 1_800_000_000, BODY),
    ]


def test_a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() -> None:
    old, new = format_secret(KEY), format_secret(OTHER)
    rotated = Secrets(current=old).rotated(new, now=1_000, grace_ms=500)

    assert rotated == Secrets(current=new, previous=old, previous_until=1_500)
    assert rotated.signing_keys(1_499) == (OTHER, KEY)
    assert rotated.signing_keys(1_500) == (OTHER,)


def test_a_rotation_without_grace_drops_the_old_secret_at_once() -> None:
    rotated = Secrets(current=format_secret(KEY)).rotated(
        format_secret(OTHER), now=1_000, grace_ms=0
    )

    assert rotated.signing_keys(1_000) == (OTHER,)
    assert rotated.previous is None


def test_rotating_twice_keeps_only_the_secret_just_replaced() -> None:
    first, second, third = (format_secret(bytes([n]) * 32) for n in (1, 2, 3))
    once = Secrets(current=first).rotated(second, now=0, grace_ms=1_000)
    twice = once.rotated(third, now=10, grace_ms=1_000)

    assert twice.signing_keys(20) == (bytes([3]) * 32, bytes([2]) * 32)


def test_secrets_never_show_in_a_repr() -> None:
    secret = format_secret(KEY)

    assert secret not in repr(Secrets(current=secret, previous=secret))
