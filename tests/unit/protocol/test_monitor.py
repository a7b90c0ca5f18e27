"""The monitor connection's rules, without sockets (PROTOCOL.md section 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from protocol.effects import VerifyToken
from protocol.events import Event, EventKind, recoverable
from protocol.ids import InterviewId, SessionId
from protocol.messages import EVENT_DATA, EventKindName, User
from protocol.monitor import (
    CloseFeed,
    MonitorProtocol,
    OpenFeed,
    Phase,
    ReadEvents,
    remaining_ms,
)

NOW = 1_800_000_000_000
INTERVIEW = InterviewId("i1")
RITA = User(id="rita", name="Rita", role="recruiter")


def event(cursor: int, interview: InterviewId = INTERVIEW) -> Event:
    return Event(interview, cursor, SessionId("s1"), EventKind.SIGNAL, NOW, {})


def sent(monitor: MonitorProtocol) -> list[dict[str, Any]]:
    return [json.loads(text) for text in monitor.messages_to_send()]


def cursors(monitor: MonitorProtocol) -> list[int]:
    return [f["cursor"] for f in sent(monitor) if f["type"] == "event"]


def ready(**options: Any) -> MonitorProtocol:
    monitor = MonitorProtocol(now=NOW, **options)
    monitor.receive_text(json.dumps({"type": "auth", "token": "t"}), NOW)
    assert monitor.effects() == [VerifyToken("t")]
    monitor.receive_authenticated(RITA, NOW)
    assert sent(monitor)[0]["type"] == "hello"
    return monitor


def subscribed(
    since: int | None = None, *, head: int = 0, pruned: int = 0, **options: Any
) -> MonitorProtocol:
    monitor = ready(**options)
    frame: dict[str, Any] = {"type": "subscribe", "interview_id": INTERVIEW}
    if since is not None:
        frame["since"] = since
    monitor.receive_text(json.dumps(frame), NOW)
    assert monitor.effects() == [OpenFeed(INTERVIEW, since)]
    monitor.receive_snapshot(INTERVIEW, [], head=head, pruned=pruned)
    return monitor


def test_only_recruiters_and_admins_may_watch() -> None:
    for role, phase in (("recruiter", Phase.READY), ("admin", Phase.READY)):
        monitor = MonitorProtocol(now=NOW)
        monitor.receive_authenticated(User(id="u", name="U", role=role), NOW)
        assert monitor.phase is phase
    candidate = MonitorProtocol(now=NOW)
    candidate.receive_authenticated(User(id="u", name="U", role="candidate"), NOW)
    assert candidate.close_code == 4403


def test_the_first_frame_must_be_auth_within_the_deadline() -> None:
    monitor = MonitorProtocol(now=NOW, auth_timeout_ms=10_000)
    monitor.receive_timeout(NOW + 9_999)
    assert monitor.close_code is None
    monitor.receive_timeout(NOW + 10_000)
    assert monitor.close_code == 4401

    early = MonitorProtocol(now=NOW)
    early.receive_text(json.dumps({"type": "subscribe", "interview_id": "x"}), NOW)
    assert [f["code"] for f in sent(early)] == ["unauthenticated"]
    assert early.close_code == 4401


def test_a_fresh_subscription_starts_at_the_head_without_a_replay() -> None:
    monitor = subscribed(head=7)
    [snapshot] = sent(monitor)
    assert snapshot == snapshot | {"cursor": 7, "recovered": False, "sessions": []}
    assert monitor.effects() == []
    monitor.receive_event(event(7))  # already in the snapshot
    monitor.receive_event(event(8))
    assert cursors(monitor) == [8]


def test_since_replays_from_the_log_then_goes_live() -> None:
    monitor = subscribed(since=3, head=6)
    [snapshot] = sent(monitor)
    assert snapshot == snapshot | {"cursor": 3, "recovered": True}
    assert monitor.effects() == [ReadEvents(INTERVIEW, 3)]
    monitor.receive_event(event(7))  # live, while the replay is read
    monitor.receive_events(INTERVIEW, [event(4), event(5), event(6)])
    assert cursors(monitor) == [4, 5, 6, 7]
    assert monitor.effects() == []


@pytest.mark.parametrize(("since", "pruned", "head"), [(9, 0, 6), (2, 3, 6)])
def test_since_from_the_future_or_pruned_is_not_recovered(
    since: int, pruned: int, head: int
) -> None:
    monitor = subscribed(since=since, head=head, pruned=pruned)
    [snapshot] = sent(monitor)
    assert snapshot == snapshot | {"cursor": head, "recovered": False}
    assert monitor.effects() == []


def test_recoverable_bounds() -> None:
    assert recoverable(3, pruned=3, head=5)
    assert recoverable(5, pruned=3, head=5)
    assert not recoverable(2, pruned=3, head=5)
    assert not recoverable(6, pruned=3, head=5)
    assert not recoverable(None, pruned=0, head=0)


def test_an_overtaking_event_waits_and_the_gap_is_read() -> None:
    monitor = subscribed(head=1)
    sent(monitor)
    monitor.receive_event(event(3))
    assert cursors(monitor) == []
    assert monitor.effects() == [ReadEvents(INTERVIEW, 1)]
    monitor.receive_event(event(2))  # arrives while the read is out
    assert cursors(monitor) == [2, 3]
    monitor.receive_events(INTERVIEW, [event(2), event(3)])
    assert cursors(monitor) == []  # nothing twice
    assert monitor.effects() == []


def test_a_lost_announcement_is_found_by_the_check() -> None:
    monitor = subscribed(head=4)
    sent(monitor)
    monitor.receive_event(None)
    assert monitor.effects() == [ReadEvents(INTERVIEW, 4)]
    monitor.receive_events(INTERVIEW, [event(5)])
    assert cursors(monitor) == [5]
    assert monitor.effects() == []  # the check read once; the page said the rest
    monitor.receive_event(None)
    assert monitor.effects() == [ReadEvents(INTERVIEW, 5)]
    monitor.receive_events(INTERVIEW, [])
    assert monitor.effects() == []  # an empty page after a check is no loss


def test_events_retention_removed_before_they_were_sent_start_over() -> None:
    monitor = subscribed(since=2, head=9)
    sent(monitor)
    assert monitor.effects() == [ReadEvents(INTERVIEW, 2)]
    monitor.receive_events(INTERVIEW, [event(6), event(7)])  # 3..5 pruned meanwhile
    assert monitor.effects() == [CloseFeed(INTERVIEW), OpenFeed(INTERVIEW, None)]
    assert cursors(monitor) == []


def test_waiting_events_are_bounded_and_read_back_from_the_log() -> None:
    monitor = subscribed(head=0, max_waiting=2)
    sent(monitor)
    for cursor in range(2, 7):  # 1 is late
        monitor.receive_event(event(cursor))
    assert monitor.effects() == [ReadEvents(INTERVIEW, 0)]
    monitor.receive_events(INTERVIEW, [event(c) for c in range(1, 5)])
    assert cursors(monitor) == [1, 2, 3, 4]
    assert monitor.effects() == [ReadEvents(INTERVIEW, 4)]
    monitor.receive_events(INTERVIEW, [event(5), event(6)])
    assert cursors(monitor) == [5, 6]


def test_subscriptions_are_independent_and_bounded() -> None:
    monitor = ready(max_subscriptions=2)
    for name in ("a", "b", "c"):
        monitor.receive_text(
            json.dumps({"type": "subscribe", "interview_id": name}), NOW
        )
    assert [f["code"] for f in sent(monitor)] == ["bad_frame"]
    assert monitor.effects() == [
        OpenFeed(InterviewId("a"), None),
        OpenFeed(InterviewId("b"), None),
    ]
    monitor.receive_text(json.dumps({"type": "unsubscribe", "interview_id": "a"}), NOW)
    assert monitor.effects() == [CloseFeed(InterviewId("a"))]
    monitor.receive_snapshot(InterviewId("a"), [], head=0, pruned=0)
    assert sent(monitor) == []  # unsubscribed: its late snapshot is dropped


def test_not_found_ends_the_subscription_with_an_error() -> None:
    monitor = ready()
    monitor.receive_text(json.dumps({"type": "subscribe", "interview_id": "x"}), NOW)
    monitor.effects()
    monitor.receive_not_found(InterviewId("x"))
    assert [f["code"] for f in sent(monitor)] == ["not_found"]
    assert monitor.subscriptions == []


def test_flooding_is_rate_limited_then_closed() -> None:
    monitor = ready(rate_per_s=0.5, rate_burst=2, flood_close_ms=1000)  # auth: 1
    ping = json.dumps({"type": "ping", "client_time": 1})
    monitor.receive_text(ping, NOW)
    monitor.receive_text(ping, NOW)
    frames = sent(monitor)
    assert [f["type"] for f in frames] == ["pong", "error"]
    assert frames[1]["code"] == "rate_limited"
    monitor.receive_text(ping, NOW + 500)  # a quarter of a token: still over
    assert monitor.close_code is None
    monitor.receive_text(ping, NOW + 1000)
    assert monitor.close_code == 4429


def test_remaining_time_never_goes_negative() -> None:
    assert remaining_ms(None, NOW) is None
    assert remaining_ms(NOW + 500, NOW) == 500
    assert remaining_ms(NOW - 500, NOW) == 0


def test_every_event_kind_is_published_with_its_data_schema() -> None:
    kinds = {kind.value for kind in EventKind}
    assert set(EventKindName.__args__) == kinds  # type: ignore[attr-defined]
    assert set(EVENT_DATA) == kinds


@settings(max_examples=200, deadline=None)
@given(
    head=st.integers(0, 20),
    since=st.none() | st.integers(0, 25),
    order=st.permutations(list(range(1, 41))),
    duplicates=st.lists(st.integers(1, 40), max_size=10),
    max_waiting=st.integers(1, 50),
)
def test_whatever_order_events_arrive_in_each_is_sent_once_in_cursor_order(
    head: int,
    since: int | None,
    order: list[int],
    duplicates: list[int],
    max_waiting: int,
) -> None:
    """Live events arrive in any order, some twice, some never (they are in the
    log); the log is read when asked; what is sent is exactly the cursors after the
    snapshot's, each once, in order."""
    log = list(range(1, 41))
    live = [c for c in order if c > head] + duplicates
    monitor = subscribed(since=since, head=head, max_waiting=max_waiting, page=7)
    [snapshot] = sent(monitor)
    delivered: list[int] = []

    def serve_reads() -> None:
        while effects := monitor.effects():
            for effect in effects:
                assert isinstance(effect, ReadEvents), effect
                page = [c for c in log if c > effect.after][:7]
                monitor.receive_events(INTERVIEW, [event(c) for c in page])
                delivered.extend(cursors(monitor))

    serve_reads()
    for cursor in live[: len(live) // 2]:
        monitor.receive_event(event(cursor))
        delivered.extend(cursors(monitor))
        serve_reads()
    monitor.receive_event(None)  # the periodic check
    delivered.extend(cursors(monitor))
    serve_reads()

    assert delivered == list(range(snapshot["cursor"] + 1, 41))
