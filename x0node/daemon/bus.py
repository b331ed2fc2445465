"""Event bus: core events and service events, fanned out to subscribers and kept in a short history.

Rules:
- `publish` never blocks and never raises: each subscriber has a bounded queue; when it is full the
  oldest event is dropped and the subscriber's `dropped` count grows.
- The history keeps the last `HISTORY_LEN` events with increasing sequence numbers so a late reader
  (the web UI) can ask for everything since a sequence number.
- Events are whatever the publisher passes (the core's frozen dataclasses or a service's own); the
  bus adds a sequence number, a wall-clock timestamp and the topic.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HISTORY_LEN = 1000
SUBSCRIBER_QUEUE_LEN = 1000


@dataclass(frozen=True)
class BusEvent:
    seq: int
    ts: float  # wall clock (time.time()) when published
    topic: str  # "core" for events of the routing core, a service name for a service's own events
    event: Any

    def as_dict(self) -> dict[str, Any]:
        body: Any = self.event
        if dataclasses.is_dataclass(body) and not isinstance(body, type):
            body = {"type": type(body).__name__, **_jsonable(dataclasses.asdict(body))}
        elif isinstance(body, dict):
            body = _jsonable(body)
        else:
            body = {"type": type(body).__name__, "value": repr(body)}
        return {"seq": self.seq, "ts": self.ts, "topic": self.topic, "event": body}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class Subscription:
    """A bounded queue of BusEvents. Iterate with `async for` or call `get()`; `close()` when done."""

    def __init__(self, bus: EventBus, topics: frozenset[str] | None, maxlen: int) -> None:
        self._bus = bus
        self.topics = topics
        self._queue: collections.deque[BusEvent] = collections.deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.dropped = 0

    def _offer(self, item: BusEvent) -> None:
        if self.topics is not None and item.topic not in self.topics:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(item)
        self._ready.set()

    async def get(self) -> BusEvent:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def get_nowait(self) -> BusEvent | None:
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BusEvent:
        return await self.get()

    def close(self) -> None:
        self._bus._subscribers.discard(self)


class EventBus:
    def __init__(self, history_len: int = HISTORY_LEN) -> None:
        self._seq = 0
        self._history: collections.deque[BusEvent] = collections.deque(maxlen=history_len)
        self._subscribers: set[Subscription] = set()

    def publish(self, topic: str, event: Any) -> BusEvent:
        self._seq += 1
        item = BusEvent(self._seq, time.time(), topic, event)
        self._history.append(item)
        for sub in list(self._subscribers):
            sub._offer(item)
        return item

    def subscribe(self, topics: set[str] | None = None, maxlen: int = SUBSCRIBER_QUEUE_LEN) -> Subscription:
        sub = Subscription(self, frozenset(topics) if topics is not None else None, maxlen)
        self._subscribers.add(sub)
        return sub

    def since(self, seq: int) -> Iterator[BusEvent]:
        """Events in the history with a sequence number greater than `seq`, oldest first."""
        return (e for e in list(self._history) if e.seq > seq)

    @property
    def last_seq(self) -> int:
        return self._seq
