"""x0node routing core (sans-I/O). Public entry points:

- `Router`, `RouterConfig`, `Outgoing` (router.py) - the coordinator the daemon drives
- the read model (views.py): frozen views of neighbours, routes, nodes, topology, drops and stats
- `Identity` (identity.py), `TrustStore`, `TrustAnchor`, `Certificate`, `RevocationList` (trust.py)
- `RouteChange` (rib.py), events (events.py), constants (protocol.py), key files (keyfile.py)

See docs/routing.md.
"""

from x0node.proto.events import Event
from x0node.proto.identity import Identity
from x0node.proto.protocol import MESH_MCAST_GROUP, MESH_UDP_PORT, MESH_ULA_PREFIX
from x0node.proto.rib import RouteChange
from x0node.proto.router import Outgoing, Router, RouterConfig
from x0node.proto.trust import Certificate, RevocationList, TrustAnchor, TrustStore
from x0node.proto.wire import DecodeError

__all__ = [
    "MESH_MCAST_GROUP",
    "MESH_UDP_PORT",
    "MESH_ULA_PREFIX",
    "Certificate",
    "DecodeError",
    "Event",
    "Identity",
    "Outgoing",
    "RevocationList",
    "RouteChange",
    "Router",
    "RouterConfig",
    "TrustAnchor",
    "TrustStore",
]
