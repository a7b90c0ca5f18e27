"""Change notifications between the writers of an attempt (server/cluster/bus.py)."""

from __future__ import annotations

from protocol.ids import SessionId
from server.cluster.bus import InProcessBus

S1 = SessionId("s-1")
S2 = SessionId("s-2")


class Heard:
    """A listener that records the origins it hears."""

    def __init__(self) -> None:
        self.origins: list[str] = []

    def __call__(self, origin: str) -> None:
        self.origins.append(origin)


async def test_a_publication_reaches_every_subscriber_of_that_session() -> None:
    bus = InProcessBus()
    first, second = Heard(), Heard()
    bus.subscribe(S1, first)
    bus.subscribe(S1, second)

    await bus.publish(S1, "sweeper")

    assert first.origins == second.origins == ["sweeper"]


async def test_a_publication_does_not_reach_subscribers_of_other_sessions() -> None:
    bus = InProcessBus()
    other = Heard()
    bus.subscribe(S2, other)

    await bus.publish(S1, "conn-1")

    assert other.origins == []


async def test_publishing_with_no_subscribers_does_nothing() -> None:
    bus = InProcessBus()
    other = Heard()
    bus.subscribe(S2, other)

    await bus.publish(S1, "conn-1")

    assert bus.sessions() == [S2]  # nothing kept for the session nobody listens to
    assert other.origins == []


async def test_a_closed_subscription_hears_nothing_more() -> None:
    bus = InProcessBus()
    closed, open_ = Heard(), Heard()
    subscription = bus.subscribe(S1, closed)
    bus.subscribe(S1, open_)
    await bus.publish(S1, "a")

    subscription.close()
    await bus.publish(S1, "b")

    assert closed.origins == ["a"]
    assert open_.origins == ["a", "b"]


async def test_closing_twice_is_harmless_and_keeps_the_others() -> None:
    bus = InProcessBus()
    gone, kept = Heard(), Heard()
    subscription = bus.subscribe(S1, gone)
    bus.subscribe(S1, kept)

    subscription.close()
    subscription.close()
    await bus.publish(S1, "a")

    assert gone.origins == []
    assert kept.origins == ["a"]


async def test_closing_the_last_subscription_forgets_the_session() -> None:
    bus = InProcessBus()
    subscription = bus.subscribe(S1, Heard())

    subscription.close()
    subscription.close()

    assert bus._listeners == {}


async def test_a_listener_may_close_its_subscription_while_hearing() -> None:
    bus = InProcessBus()
    later = Heard()
    heard: list[str] = []

    def once(origin: str) -> None:
        heard.append(origin)
        subscription.close()

    subscription = bus.subscribe(S1, once)
    bus.subscribe(S1, later)

    await bus.publish(S1, "a")
    await bus.publish(S1, "b")

    assert heard == ["a"]
    assert later.origins == ["a", "b"]
