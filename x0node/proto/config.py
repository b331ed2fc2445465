"""The routing core's tunables (`RouterConfig`): timers and announced prefixes, defaults from protocol.py.

Rules: validated when built (ValueError naming the field); the daemon's `[routing]` section maps onto
it field by field (daemon/routing_config.py); documented in docs/routing.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from x0node.proto.prefixes import normalise
from x0node.proto.protocol import (
    DEAD_NODE_TIMEOUT_S,
    FULL_HELLO_INTERVAL_S,
    HELLO_INTERVAL_S,
    HELLO_MISSED_DEAD,
    LSA_MAX_AGE_S,
    LSA_REFRESH_S,
    LSA_RETRANSMIT_S,
    MAX_LSA_PREFIXES,
    SLOT_JITTER_FRACTION,
    SLOTS_PER_FRAME,
    SPF_DELAY_S,
)


@dataclass(frozen=True)
class RouterConfig:
    """Tunables of the core (defaults from protocol.py; documented in docs/routing.md)."""

    hello_interval_s: float = HELLO_INTERVAL_S
    hello_missed_dead: int = HELLO_MISSED_DEAD
    full_hello_interval_s: float = FULL_HELLO_INTERVAL_S
    lsa_refresh_s: float = LSA_REFRESH_S
    lsa_max_age_s: float = LSA_MAX_AGE_S
    lsa_retransmit_s: float = LSA_RETRANSMIT_S
    dead_node_timeout_s: float = DEAD_NODE_TIMEOUT_S
    spf_delay_s: float = SPF_DELAY_S
    slots_per_frame: int = SLOTS_PER_FRAME
    slot_jitter_fraction: float = SLOT_JITTER_FRACTION
    prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.01 <= self.hello_interval_s <= 10.0:
            raise ValueError("hello_interval_s must be within [0.01, 10]")
        if not 1 <= self.hello_missed_dead <= 50:
            raise ValueError("hello_missed_dead must be within [1, 50]")
        if self.full_hello_interval_s < self.hello_interval_s:
            raise ValueError("full_hello_interval_s must be >= hello_interval_s")
        if len(self.prefixes) > MAX_LSA_PREFIXES:
            raise ValueError(f"at most {MAX_LSA_PREFIXES} prefixes")
        for p in self.prefixes:
            normalise(p)

    @property
    def dead_interval_s(self) -> float:
        return (self.hello_missed_dead + 0.5) * self.hello_interval_s
