"""What the managed yggdrasil (Debian's 0.4.7) should look like, from the mesh's view. Pure.

Rules and invariants:
- Identity: yggdrasil runs with the node's own Ed25519 key, so its public key is the node's and the
  mesh's certificates speak for it. `AllowedPublicKeys` (who may open a peering to us) is the set of
  certified mesh nodes we know (LSDB origins; the core installs an LSA only after checking the
  origin's credential) minus revoked ones, plus our own key. yggdrasil 0.4.7 cannot change that list
  at run time; the adapter rewrites the file and restarts it: at once when a key left the set (a
  revoked or vanished node is shut out), at most once per RESTART_MIN_INTERVAL_S when keys joined.
- Peers = the current mesh neighbours (state "up"), by their mesh address (one hop away), at the one
  yggdrasil port; reconciled through the admin socket (addpeer/removepeer), so a neighbour that goes
  is dropped and one that comes is added without a restart. Multicast discovery is off (the mesh
  already knows its neighbours and who is certified). Not by link-local address: yggdrasil 0.4.7
  skips the AllowedPublicKeys check for peerings from link-local addresses (it takes them for
  multicast-discovered peers), so only peerings between mesh addresses are actually restricted; it
  listens on our mesh address only.
- Admin answers are bounded (MAX_ADMIN_BYTES, MAX_PEERS) and validated field by field; a malformed
  entry is skipped, never raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from x0node.proto.identity import mesh_address_of
from x0node.proto.views import NeighbourView

MAX_ADMIN_BYTES = 1 << 20
MAX_PEERS = 256
RESTART_MIN_INTERVAL_S = 30.0
KEY_RE = re.compile(r"^[0-9a-f]{64}$")


def render_config(seed: bytes, public_key: bytes, allowed_keys: Iterable[bytes], listen_addr: str, port: int,
                  admin_socket: str, ifname: str, mtu: int) -> dict[str, Any]:
    """The yggdrasil 0.4.7 JSON configuration (its -useconffile input)."""
    return {
        "PrivateKey": (seed + public_key).hex(),
        "PublicKey": public_key.hex(),
        "Peers": [],
        "InterfacePeers": {},
        "Listen": [f"tcp://[{listen_addr}]:{port}"],
        "AdminListen": f"unix://{admin_socket}",
        "MulticastInterfaces": [],
        "AllowedPublicKeys": sorted(k.hex() for k in set(allowed_keys) | {public_key}),
        "IfName": ifname,
        "IfMTU": mtu,
        "NodeInfoPrivacy": True,
        "NodeInfo": {},
    }


def allowed_keys(nodes: Iterable[tuple[bytes, bytes]], revoked: frozenset[bytes] | set[bytes]) -> frozenset[bytes]:
    """Public keys of (node id, public key) pairs that are not revoked."""
    return frozenset(pk for nid, pk in nodes if nid not in revoked and len(pk) == 32)


def desired_peers(neighbours: Iterable[NeighbourView], port: int) -> set[str]:
    """Peering URIs of the neighbours that are up (the router's read model): their mesh address (derived
    from the node id)."""
    out = set()
    for n in neighbours:
        nid = n.node_id
        if n.state != "up" or not re.fullmatch(r"[0-9a-f]{32}", nid):
            continue
        out.add(f"tcp://[{mesh_address_of(bytes.fromhex(nid))}]:{port}")
    return out


def reconcile(desired: set[str], current: set[str]) -> tuple[list[str], list[str]]:
    """(to add, to remove), each sorted."""
    return sorted(desired - current), sorted(current - desired)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else 0.0


def parse_peers(answer: Any) -> list[dict[str, Any]]:
    """getpeers answer of yggdrasil 0.4.7 -> [{key, address, remote, bytes_recvd, bytes_sent, uptime_s}]."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return []
    resp = answer.get("response")
    peers = resp.get("peers") if isinstance(resp, dict) else None
    if isinstance(peers, dict):  # some builds key the entries by address
        peers = [dict(v, address=k) for k, v in peers.items() if isinstance(v, dict)]
    if not isinstance(peers, list):
        return []
    out = []
    for p in peers[:MAX_PEERS]:
        if not isinstance(p, dict):
            continue
        key = p.get("key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            continue
        out.append({
            "key": key,
            "address": str(p.get("address", ""))[:64],
            "remote": str(p.get("remote", ""))[:256],
            "bytes_recvd": _num(p.get("bytes_recvd")),
            "bytes_sent": _num(p.get("bytes_sent")),
            "uptime_s": _num(p.get("uptime")),
        })
    return out


def parse_self(answer: Any) -> dict[str, str]:
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return {}
    resp = answer.get("response")
    if not isinstance(resp, dict):
        return {}
    out = {}
    for k in ("key", "address", "subnet", "build_version"):
        v = resp.get(k)
        if isinstance(v, str) and len(v) <= 128:
            out[k] = v
    return out
