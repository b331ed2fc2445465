"""What every part of the routing core is built on: who we are, the tunables, the seeded rng, the
outbox and the shared wake-up.

Rules: one Basis per Router, made by it and handed to each part; the parts keep no other global state.
The rng is the only randomness (seeded by the daemon), `out` the only way to the daemon, `wake` the
only cache of the next timer (timers.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from x0node.proto.config import RouterConfig
from x0node.proto.identity import Identity
from x0node.proto.outbox import Outbox
from x0node.proto.timers import Wakeup
from x0node.proto.trust import Credential


@dataclass(frozen=True)
class Basis:
    identity: Identity
    config: RouterConfig
    rng: random.Random
    out: Outbox
    wake: Wakeup
    credential: Credential = field(init=False)

    def __post_init__(self) -> None:
        cred = Credential(self.identity.public_key, self.identity.certificate)  # type: ignore[arg-type]
        object.__setattr__(self, "credential", cred)

    @property
    def me(self) -> bytes:
        return self.identity.node_id


class Part:
    """A part of the core: the basis's members as attributes (`self.out`, `self.rng`, ...)."""

    def __init__(self, basis: Basis) -> None:
        self.identity = basis.identity
        self.me = basis.me
        self.credential = basis.credential
        self.config = basis.config
        self.rng = basis.rng
        self.out = basis.out
        self.wake = basis.wake
