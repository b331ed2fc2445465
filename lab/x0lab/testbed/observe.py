"""What faults the kernel shows right now, read independently of the lab's own records.

Used to check the fault lab's ground truth against reality (tests, chaos runs): it reads only kernel
and process state — link flags, qdiscs, nftables rulesets, the node groups' limits, the daemons'
process states — never the testbed's list of faults. Each observation is (sign, target), where the
target is spelled as in faults.py (`a-b` for a link, `n<k>` for a node) and `SIGN_OF` maps each fault
kind to the sign it leaves (a flapping link shows as `link-admin-down` only while it is down).

Rules: read-only; three commands per namespace (`ip -n link`, `tc -n qdisc`, `nft list ruleset`) and
a few file reads per node; a namespace that vanished mid-read contributes nothing. `observe_node` reads
one node's namespace and groups (a link fault shows from the end(s) that carry it: link-down and flap
from A's end, the ingress chains and qdiscs from both), so a check can pair each sign with the short
interval in which it was read; `observe` is the union over all nodes.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from x0lab.testbed import faults
from x0lab.testbed.bed import Testbed, sh

SIGN_OF = {
    "link-down": "link-admin-down",
    "flap": "link-admin-down",
    "link-silent": "ingress-drop",
    "loss": "ingress-loss",
    "congest": "tbf",
    "partial-blackhole": "forward-drop",
    "cpu-hog": "cpu-cap",
    "mem-pressure": "mem-limit",
    "hang": "stopped",
    "kill": "no-daemon",
}
MEMORY_NO_LIMIT_ABOVE = 1 << 60


def _json(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError:
        return None


def _link_key(a: int, b: int) -> str:
    return f"{min(a, b)}-{max(a, b)}"


def _read(path: pathlib.Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def observe(bed: Testbed) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for k in bed.nodes:
        seen |= observe_node(bed, k)
    return seen


def observe_node(bed: Testbed, k: int) -> set[tuple[str, str]]:
    node = bed.nodes[k]
    seen: set[tuple[str, str]] = set()
    by_if = {ifname: j for j, ifname in node.ifaces.items()}
    for link in _json(sh("ip", "-n", node.ns, "-j", "link", "show", check=False)) or []:
        j = by_if.get(link.get("ifname"))
        if j is not None and "UP" not in link.get("flags", []):
            seen.add(("link-admin-down", _link_key(k, j)))
    for qd in _json(sh("tc", "-n", node.ns, "-j", "qdisc", "show", check=False)) or []:
        j = by_if.get(qd.get("dev"))
        if j is not None and qd.get("kind") == "tbf":
            seen.add(("tbf", _link_key(k, j)))
    ruleset = _json(sh("nft", "-j", "list", "ruleset", ns=node.ns, check=False)) or {}
    for item in ruleset.get("nftables", []):
        if "table" in item and item["table"].get("name") == faults.NODE_TABLE:
            seen.add(("forward-drop", f"n{k}"))
        rule = item.get("rule")
        if not rule or rule.get("table") != faults.FAULT_TABLE:
            continue
        j = by_if.get(str(rule.get("chain", "")).removeprefix("in_"))
        if j is None:
            continue
        text = json.dumps(rule.get("expr", []))
        if '"drop"' in text:
            seen.add(("ingress-loss" if "numgen" in text else "ingress-drop", _link_key(k, j)))
    groups = node.cgroups
    if groups:
        quota = _read(pathlib.Path(groups["cpu"]["node"]) / "cpu.cfs_quota_us")
        if quota is not None and int(quota) != -1:
            seen.add(("cpu-cap", f"n{k}"))
        limit = _read(pathlib.Path(groups["memory"]["node"]) / "memory.limit_in_bytes")
        if limit is not None and int(limit) < MEMORY_NO_LIMIT_ABOVE:
            seen.add(("mem-limit", f"n{k}"))
        pids = [int(p) for p in (_read(pathlib.Path(groups["cpu"]["daemon"]) / "cgroup.procs") or "").split()]
    else:
        pids = [node.pid] if node.pid is not None and bed.alive(k) else []
    if bed.daemon != "none":
        states = [faults.process_state(pid) for pid in pids]
        states = [s for s in states if s is not None and s not in ("Z", "X")]
        if not states:
            seen.add(("no-daemon", f"n{k}"))
        elif all(s in ("T", "t") for s in states):
            seen.add(("stopped", f"n{k}"))
    return seen


def shown_by(kind: str, a: int, b: int | None) -> list[int]:
    """The nodes whose reads show a fault of `kind` on (a, b): link-down and flap only A's end."""
    if b is None or kind in ("link-down", "flap"):
        return [a]
    return [a, b]
