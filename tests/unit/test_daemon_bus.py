from __future__ import annotations

from dataclasses import dataclass

from x0node.daemon.bus import EventBus


@dataclass(frozen=True)
class Ping:
    n: int
    raw: bytes = b"\x01"


async def test_publish_subscribe_and_history():
    bus = EventBus(history_len=3)
    sub = bus.subscribe({"core"})
    for i in range(5):
        bus.publish("core", Ping(i))
    bus.publish("web", {"x": 1})
    got = [(await sub.get()).event.n for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]
    assert sub.get_nowait() is None
    assert [e.seq for e in bus.since(4)] == [5, 6]
    assert bus.since(0).__next__().seq == 4  # history bounded
    d = next(bus.since(5)).as_dict()
    assert d["topic"] == "web" and d["event"] == {"x": 1}
    assert next(bus.since(4)).as_dict()["event"] == {"type": "Ping", "n": 4, "raw": "01"}
    sub.close()


async def test_slow_subscriber_drops_oldest():
    bus = EventBus()
    sub = bus.subscribe(maxlen=2)
    for i in range(4):
        bus.publish("core", Ping(i))
    assert sub.dropped == 2
    assert (await sub.get()).event.n == 2
