"""Prometheus file-based discovery targets from the mesh's own view of its nodes.

Rules and invariants:
- The source is a router's `/metrics` (served without a session to the mesh's ULA range): its
  `x0node_node_info{node_id,mesh_addr,role,self}` family lists every node that router knows from the
  routing view. Several routers may be asked; their views are merged (a partitioned mesh still yields
  every node some side knows). When the mesh-state node directory is exported, its fields become labels
  the same way.
- Everything read is bounded and validated: at most MAX_BODY_BYTES of text per source, at most
  MAX_TARGETS nodes; a node id must be 16..64 hex digits, an address an IP address, a role one of
  ROLES (or empty). A bad row is dropped and counted by reason; it never aborts the rest.
- A node that drops out of every router's view (its link-state record ages out a minute after it went
  down) stays a target for `forget_after_s` (default FORGET_AFTER_S) after it was last seen: a dead
  router must keep failing its scrapes (X0NodeDown) instead of silently leaving discovery. What was seen
  when is kept beside the output in `<out>.known` (not `*.json`, so file discovery never reads it;
  atomic writes), bounded like the nodes.
- The output is Prometheus' file-SD JSON (one group per node: `targets: ["[addr]:port"]`, labels
  `node_id` and `role`), sorted by node id so an unchanged mesh gives byte-identical files, written
  through io/atomicfile only when its content changed (Prometheus re-reads a file on change).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import pathlib
import re
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from x0node.io.atomicfile import write_atomic

MAX_BODY_BYTES = 8 * 2**20
MAX_TARGETS = 4096  # far above the routing core's node limit; a bound, not a design point
FETCH_TIMEOUT_S = 10.0
FORGET_AFTER_S = 7 * 86400.0  # a week: long enough to notice and replace a dead router
DEFAULT_METRICS_PORT = 8080
ROLES = ("", "node", "gateway", "admin")
NODE_ID_RE = re.compile(r"[0-9a-f]{16,64}")
INFO_FAMILY = "x0node_node_info"


class TargetsError(Exception):
    """A source could not be read at all (the message names it)."""


@dataclass(frozen=True)
class Node:
    node_id: str
    mesh_addr: str
    role: str


@dataclass
class Discovery:
    nodes: dict[str, Node] = field(default_factory=dict)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, labels: dict[str, str]) -> None:
        nid = labels.get("node_id", "")
        if not NODE_ID_RE.fullmatch(nid):
            self.dropped["bad_node_id"] += 1
            return
        try:
            addr = ipaddress.ip_address(labels.get("mesh_addr", ""))
        except ValueError:
            self.dropped["bad_address"] += 1
            return
        role = labels.get("role", "")
        if role not in ROLES:
            self.dropped["bad_role"] += 1
            return
        if nid not in self.nodes and len(self.nodes) >= MAX_TARGETS:
            self.dropped["too_many"] += 1
            return
        old = self.nodes.get(nid)
        self.nodes[nid] = Node(nid, str(addr), role or (old.role if old else ""))

    def add_exposition(self, text: str) -> int:
        """Read x0node_node_info samples from Prometheus text; returns how many rows were offered."""
        from prometheus_client.parser import text_string_to_metric_families

        offered = 0
        try:
            for family in text_string_to_metric_families(text):
                if family.name != INFO_FAMILY:
                    continue
                for sample in family.samples:
                    offered += 1
                    self.add(dict(sample.labels))
        except ValueError as exc:  # the parser's one error for malformed text
            self.dropped["bad_exposition"] += 1
            raise TargetsError(f"malformed metrics text: {exc}") from None
        return offered

    def remember(self, path: pathlib.Path, now: float, forget_after_s: float = FORGET_AFTER_S) -> int:
        """Add nodes seen earlier (within forget_after_s) from `path`, then record what is seen now there.
        Returns how many were kept only from memory."""
        try:
            known = json.loads(path.read_text())
            if not isinstance(known, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            known = {}
        except (OSError, ValueError):
            self.dropped["bad_memory"] += 1
            known = {}
        seen_now = set(self.nodes)
        kept = 0
        for nid, row in known.items():
            if nid in seen_now or not isinstance(row, dict):
                continue
            last = row.get("last_seen")
            if not isinstance(last, int | float) or now - last > forget_after_s:
                continue
            before = len(self.nodes)
            self.add({"node_id": str(nid), "mesh_addr": str(row.get("mesh_addr", "")), "role": str(row.get("role", ""))})
            kept += len(self.nodes) - before
        memory = {nid: {"mesh_addr": n.mesh_addr, "role": n.role,
                        "last_seen": now if nid in seen_now else known[nid]["last_seen"]}
                  for nid, n in sorted(self.nodes.items())}
        write_if_changed(path, (json.dumps(memory, indent=1, sort_keys=True) + "\n").encode())
        return kept

    def file_sd(self, port: int) -> list[dict[str, object]]:
        out = []
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            host = f"[{n.mesh_addr}]" if ":" in n.mesh_addr else n.mesh_addr
            labels = {"node_id": n.node_id}
            if n.role:
                labels["role"] = n.role
            out.append({"targets": [f"{host}:{port}"], "labels": labels})
        return out


def fetch(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> str:
    if not url.startswith(("http://", "https://")):
        raise TargetsError(f"{url}: expected an http(s):// URL of a router's /metrics")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only, checked above # nosec B310
            body = resp.read(MAX_BODY_BYTES + 1)
    except OSError as exc:
        raise TargetsError(f"{url}: {exc}") from None
    if len(body) > MAX_BODY_BYTES:
        raise TargetsError(f"{url}: more than {MAX_BODY_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


def render(groups: Iterable[dict[str, object]]) -> bytes:
    return (json.dumps(list(groups), indent=1, sort_keys=True) + "\n").encode()


def write_if_changed(path: pathlib.Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o644)
    return True
