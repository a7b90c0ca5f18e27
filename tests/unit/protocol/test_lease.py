"""Leases and how ``resume`` may take an attempt's lock.

Tests protocol/lease.py and :func:`protocol.admission.decide_attach`.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from protocol import lease as leases
from protocol.admission import Attach, decide_attach
from protocol.lease import Attachment

KEY = leases.derive_key("a-secret-of-at-least-32-bytes-long!!")
OTHER_KEY = leases.derive_key("another-secret-of-at-least-32-bytes!")
ATTACHMENT = Attachment(session_id="s-1", epoch=3, candidate_id="alice")
LEASE = leases.issue(KEY, ATTACHMENT)


def test_a_lease_is_an_opaque_url_safe_string_not_the_epoch() -> None:
    assert len(LEASE) == 43
    assert LEASE.replace("-", "").replace("_", "").isalnum()
    assert "s-1" not in LEASE and "alice" not in LEASE and LEASE != "3"


def test_the_lease_key_is_derived_from_the_secret_not_the_secret() -> None:
    secret = "a-secret-of-at-least-32-bytes-long!!"

    assert leases.derive_key(secret) == KEY
    assert KEY != secret.encode()
    assert len(KEY) == 32


def test_the_same_attachment_always_gets_the_same_lease() -> None:
    again = Attachment(session_id="s-1", epoch=3, candidate_id="alice")

    assert leases.issue(KEY, again) == LEASE
    assert leases.names(KEY, again, LEASE)


@pytest.mark.parametrize(
    "other",
    [
        Attachment(session_id="s-1", epoch=4, candidate_id="alice"),
        Attachment(session_id="s-2", epoch=3, candidate_id="alice"),
        Attachment(session_id="s-1", epoch=3, candidate_id="bob"),
    ],
    ids=["attached-since", "other-attempt", "other-candidate"],
)
def test_a_lease_names_only_its_own_attachment(other: Attachment) -> None:
    assert leases.issue(KEY, other) != LEASE
    assert not leases.names(KEY, other, LEASE)


def test_fields_cannot_be_shifted_between_session_and_candidate() -> None:
    shifted = Attachment(session_id='s-1",3,"alice', epoch=3, candidate_id="alice")

    assert not leases.names(KEY, shifted, LEASE)


def test_a_lease_from_another_secret_is_not_accepted() -> None:
    assert not leases.names(KEY, ATTACHMENT, leases.issue(OTHER_KEY, ATTACHMENT))


@given(st.text())
def test_any_string_a_client_sends_is_compared_without_raising(text: str) -> None:
    assert leases.names(KEY, ATTACHMENT, text) is (text == LEASE)


def test_a_lone_surrogate_is_not_a_lease() -> None:
    assert not leases.names(KEY, ATTACHMENT, "\ud800")


# -- decide_attach ---------------------------------------------------------------------


def decide(
    *, takeover: bool = False, lease: str | None, current: Attachment | None
) -> Attach:
    return decide_attach(takeover=takeover, lease=lease, key=KEY, current=current)


@pytest.mark.parametrize("takeover", [False, True])
def test_the_lease_of_the_last_attach_reattaches_at_once(takeover: bool) -> None:
    assert decide(takeover=takeover, lease=LEASE, current=ATTACHMENT) is (
        Attach.REATTACH
    )


@pytest.mark.parametrize(
    "lease",
    [
        None,
        leases.issue(KEY, Attachment("s-1", 2, "alice")),
        leases.issue(KEY, Attachment("s-1", 3, "bob")),
        leases.issue(OTHER_KEY, ATTACHMENT),
        "forged",
        "",
        "3",
    ],
    ids=["none", "stale", "other-candidate", "other-key", "forged", "empty", "epoch"],
)
@pytest.mark.parametrize("takeover", [False, True])
def test_any_other_lease_counts_as_none(lease: str | None, takeover: bool) -> None:
    expected = Attach.TAKEOVER if takeover else Attach.FREE

    assert decide(takeover=takeover, lease=lease, current=ATTACHMENT) is expected


def test_without_the_attempts_epoch_no_lease_is_accepted() -> None:
    assert decide(lease=LEASE, current=None) is Attach.FREE
