"""The replicated state machine behind the Raft group: mesh time, client address pools, leases and the
OTA rollout seat. pysyncobj (group.py) feeds it committed commands in log order on every member.

Rules and invariants:
- Deterministic: `apply(cmd)` depends only on the machine and the command (a JSON-ready dict), never on a
  clock, randomness or the host; every member that applied the same log holds the same machine. Bad
  commands are answered {"ok": false, "error": ...} and change nothing.
- Mesh time: the group's own clock, advanced only by `tick` commands the leader proposes with the time
  its monotonic clock measured since its previous tick (a new leader's first tick says 0; at most
  TICK_DT_MAX_S per tick). Raft commits entries of one leader at a time, so the measured intervals never
  overlap: mesh time never runs faster than real time and stands still while there is no leader. Every
  expiry below is in mesh time, so a lease or a pool is never given to another node before its holder,
  timing with its own monotonic clock from the moment it asked, has seen the same span pass.
- Pools: at most one pool index per node and one node per index (pools.py makes distinct indexes
  disjoint). A node's claim renews its pool; a pool not renewed for `reclaim_after_s` of mesh time is
  reclaimed. The layout is fixed by the first `configure` command and never changes afterwards.
- Leases: a resource has at most one unexpired holder. On `disrupt/<X>` resources THE RULE of the healing
  loop also holds: a lease is granted only when no unexpired `disrupt/` lease targets X, a neighbour of
  X, or a node that has X as a neighbour (the requester supplies X's neighbours; stored with the lease).
  Leases expire `ttl_s` of mesh time after their grant or last renewal.
- Rollout seat: the holder of the `ota/rollout` lease alone may write a rollout's progress record, so a
  new coordinator continues from the last committed step.
- Retries are idempotent: a command with a request id `rid` that was applied before returns the same
  answer (the last MAX_RESULTS answers are kept, oldest evicted first).
- Every table is bounded (MAX_LEASES, MAX_ROLLOUTS, MAX_RESULTS, pools by the layout's count).
"""

from __future__ import annotations

import copy
import json
import re
from collections import OrderedDict
from typing import Any

from x0node.coord.pools import PoolLayout

TICK_DT_MAX_S = 10.0
LEASE_TTL_MAX_S = 3600.0
MAX_LEASES = 1024
MAX_LEASE_NEIGHBOURS = 64
MAX_ROLLOUTS = 64
ROLLOUT_STATE_MAX_BYTES = 4096
MAX_RESULTS = 4096
RECLAIM_MIN_S = 1.0
NODE_RE = re.compile(r"^[0-9a-f]{32}$")
RESOURCE_RE = re.compile(r"^(disrupt/[0-9a-f]{32}|ota/rollout|lock/[A-Za-z0-9_.:-]{1,64})$")
ROLLOUT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ROLLOUT_SEAT = "ota/rollout"
DISRUPT_PREFIX = "disrupt/"


class CommandError(ValueError):
    """A command is malformed or not allowed; the answer carries the message."""


def _node(cmd: dict[str, Any], key: str) -> str:
    v = cmd.get(key)
    if not isinstance(v, str) or not NODE_RE.match(v):
        raise CommandError(f"{key}: expected a node id (32 hex digits)")
    return v


def _num(cmd: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = cmd.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise CommandError(f"{key}: expected a number between {lo:g} and {hi:g}")
    return float(v)


def _str(cmd: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    v = cmd.get(key)
    if not isinstance(v, str) or not pattern.match(v):
        raise CommandError(f"{key}: not allowed")
    return v


class Machine:
    def __init__(self) -> None:
        self.mesh_time_s = 0.0
        self.applied = 0
        self.layout: dict[str, Any] | None = None
        self.reclaim_after_s = 0.0
        self.pools: dict[str, dict[str, Any]] = {}  # node -> {"index", "renewed_s"}
        self.leases: dict[str, dict[str, Any]] = {}  # resource -> {"holder", "lease_id", "expires_s", ...}
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.results: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.reclaimed = 0

    # --- entry point --------------------------------------------------------------------------------

    def apply(self, cmd: Any) -> dict[str, Any]:
        self.applied += 1
        rid = cmd.get("rid") if isinstance(cmd, dict) else None
        if isinstance(rid, str) and rid in self.results:
            return self.results[rid]
        try:
            if not isinstance(cmd, dict):
                raise CommandError("a command is an object")
            handler = self._HANDLERS.get(cmd.get("op"))  # type: ignore[arg-type]
            if handler is None:
                raise CommandError("unknown op")
            out = handler(self, cmd)
        except CommandError as exc:
            out = {"ok": False, "error": str(exc)}
        if isinstance(rid, str) and len(rid) <= 64:
            self.results[rid] = out
            while len(self.results) > MAX_RESULTS:
                self.results.popitem(last=False)
        return out

    # --- commands -----------------------------------------------------------------------------------

    def _tick(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.mesh_time_s += _num(cmd, "dt", 0.0, TICK_DT_MAX_S)
        self._expire()
        return {"ok": True, "mesh_time_s": self.mesh_time_s}

    def _configure(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.layout is None:
            raw = cmd.get("layout")
            if not isinstance(raw, dict):
                raise CommandError("layout: expected an object")
            try:
                layout = PoolLayout(str(raw["v4"]), int(raw["v4_len"]), str(raw["v6"]), int(raw["v6_len"]))
            except (KeyError, ValueError, TypeError) as exc:
                raise CommandError(f"layout: {exc}") from None
            self.layout = layout.as_dict()
            self.reclaim_after_s = _num(cmd, "reclaim_after_s", RECLAIM_MIN_S, 365 * 86400.0)
        return {"ok": True, "layout": dict(self.layout), "reclaim_after_s": self.reclaim_after_s}

    def _pool_layout(self) -> PoolLayout:
        if self.layout is None:
            raise CommandError("pools are not configured yet")
        return PoolLayout(**self.layout)

    def _pool(self, cmd: dict[str, Any]) -> dict[str, Any]:
        node = _node(cmd, "node")
        layout = self._pool_layout()
        self._expire()
        entry = self.pools.get(node)
        if entry is None:
            used = {e["index"] for e in self.pools.values()}
            free = next((i for i in range(layout.count) if i not in used), None)
            if free is None:
                raise CommandError("no free pool")
            entry = self.pools[node] = {"index": free, "renewed_s": self.mesh_time_s}
        entry["renewed_s"] = self.mesh_time_s
        v4, v6 = layout.prefixes(entry["index"])
        return {"ok": True, "index": entry["index"], "v4": v4, "v6": v6, "valid_s": self.reclaim_after_s}

    def _pool_release(self, cmd: dict[str, Any]) -> dict[str, Any]:
        node = _node(cmd, "node")
        return {"ok": True, "released": self.pools.pop(node, None) is not None}

    def _lease(self, cmd: dict[str, Any]) -> dict[str, Any]:
        resource = _str(cmd, "resource", RESOURCE_RE)
        holder = _node(cmd, "holder")
        lease_id = cmd.get("lease_id")
        if isinstance(lease_id, bool) or not isinstance(lease_id, int) or not 0 <= lease_id < 2**63:
            raise CommandError("lease_id: expected a non-negative integer")
        ttl = _num(cmd, "ttl_s", 0.001, LEASE_TTL_MAX_S)
        raw = cmd.get("neighbours", [])
        if not isinstance(raw, list) or len(raw) > MAX_LEASE_NEIGHBOURS:
            raise CommandError(f"neighbours: at most {MAX_LEASE_NEIGHBOURS} node ids")
        neighbours = sorted({_node({"n": n}, "n") for n in raw})
        reason = str(cmd.get("reason", ""))[:128]
        self._expire()
        cur = self.leases.get(resource)
        if cur is not None:
            if cur["holder"] != holder or cur["lease_id"] != lease_id:
                return {"ok": True, "granted": False, "detail": f"held by {cur['holder'][:8]}"}
        elif resource.startswith(DISRUPT_PREFIX):
            target = resource[len(DISRUPT_PREFIX):]
            for res, other in self.leases.items():
                if not res.startswith(DISRUPT_PREFIX):
                    continue
                o = res[len(DISRUPT_PREFIX):]
                if o == target or o in neighbours or target in other["neighbours"]:
                    return {"ok": True, "granted": False,
                            "detail": f"neighbour {o[:8]} holds {res[:17]} (one disruptive action per neighbourhood)"}
        if cur is None and len(self.leases) >= MAX_LEASES:
            raise CommandError("too many leases")
        self.leases[resource] = {"holder": holder, "lease_id": lease_id, "expires_s": self.mesh_time_s + ttl,
                                 "neighbours": neighbours if cur is None else cur["neighbours"], "reason": reason}
        return {"ok": True, "granted": True, "ttl_s": ttl, "detail": "renewed" if cur else "granted"}

    def _lease_release(self, cmd: dict[str, Any]) -> dict[str, Any]:
        resource = _str(cmd, "resource", RESOURCE_RE)
        holder = _node(cmd, "holder")
        cur = self.leases.get(resource)
        if cur is not None and cur["holder"] == holder and cur.get("lease_id") == cmd.get("lease_id"):
            del self.leases[resource]
            return {"ok": True, "released": True}
        return {"ok": True, "released": False}

    def _rollout_put(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rollout = _str(cmd, "rollout", ROLLOUT_RE)
        holder = _node(cmd, "holder")
        self._expire()
        seat = self.leases.get(ROLLOUT_SEAT)
        if seat is None or seat["holder"] != holder:
            raise CommandError("the rollout seat is not held by this node")
        state = cmd.get("state")
        if len(json.dumps(state, separators=(",", ":"))) > ROLLOUT_STATE_MAX_BYTES:
            raise CommandError(f"state: larger than {ROLLOUT_STATE_MAX_BYTES} bytes")
        if rollout not in self.rollouts and len(self.rollouts) >= MAX_ROLLOUTS:
            oldest = min(self.rollouts, key=lambda r: self.rollouts[r]["updated_s"])
            del self.rollouts[oldest]
        self.rollouts[rollout] = {"holder": holder, "state": copy.deepcopy(state), "updated_s": self.mesh_time_s}
        return {"ok": True}

    def _read(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A linearizable read: answered in log order like a write."""
        self._expire()
        what = cmd.get("what")
        if what == "time":
            return {"ok": True, "mesh_time_s": self.mesh_time_s, "applied": self.applied}
        if what == "pools":
            return {"ok": True, "pools": self.pool_table()}
        if what == "leases":
            return {"ok": True, "leases": self.lease_table()}
        if what == "rollout":
            rollout = _str(cmd, "rollout", ROLLOUT_RE)
            return {"ok": True, "rollout": copy.deepcopy(self.rollouts.get(rollout))}
        raise CommandError("what: time, pools, leases or rollout")

    _HANDLERS = {
        "tick": _tick, "configure": _configure, "pool": _pool, "pool_release": _pool_release,
        "lease": _lease, "lease_release": _lease_release, "rollout_put": _rollout_put, "read": _read,
    }

    # --- housekeeping and views ---------------------------------------------------------------------

    def _expire(self) -> None:
        now = self.mesh_time_s
        for res in [r for r, v in self.leases.items() if v["expires_s"] <= now]:
            del self.leases[res]
        if self.layout is not None:
            for node in [n for n, e in self.pools.items() if e["renewed_s"] + self.reclaim_after_s <= now]:
                del self.pools[node]
                self.reclaimed += 1

    def pool_table(self) -> dict[str, dict[str, Any]]:
        if self.layout is None:
            return {}
        layout = PoolLayout(**self.layout)
        out = {}
        for node, e in sorted(self.pools.items()):
            v4, v6 = layout.prefixes(e["index"])
            out[node] = {"index": e["index"], "v4": v4, "v6": v6,
                         "expires_in_s": round(e["renewed_s"] + self.reclaim_after_s - self.mesh_time_s, 3)}
        return out

    def lease_table(self) -> dict[str, dict[str, Any]]:
        return {r: {"holder": v["holder"], "lease_id": v["lease_id"], "reason": v["reason"],
                    "expires_in_s": round(v["expires_s"] - self.mesh_time_s, 3)}
                for r, v in sorted(self.leases.items())}

    def view(self) -> dict[str, Any]:
        return {"mesh_time_s": round(self.mesh_time_s, 3), "applied": self.applied, "layout": self.layout,
                "reclaim_after_s": self.reclaim_after_s, "pools": self.pool_table(), "leases": self.lease_table(),
                "rollouts": sorted(self.rollouts), "reclaimed": self.reclaimed}
