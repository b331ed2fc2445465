"""Two sites behind their own NAT and a rendezvous on the "internet", in namespaces, running x0node.

    site A:  a2 ──(mesh veth)── a ──(lan)── nata ══╗
                                                     inet ── r (rendezvous, 198.51.100.1)
    site B:                     b ──(lan)── natb ══╝

Rules and invariants:
- Every namespace is named `<id>-<role>` with id = `x0n<pid><n><random>`, recorded before it is
  created; `down()` stops the daemons it started (by PID) and deletes exactly those namespaces.
- The NATs are nftables masquerade on their WAN side: `port-preserving` keeps the source port (an
  endpoint-independent mapping, what most home routers do), `symmetric` gives every new flow a random
  port (`masquerade fully-random`), so the port the rendezvous sees is useless to the other site.
  Conntrack lets replies in and nothing else.
- Addresses: internet 100.64.1.0/24 (nata), 100.64.2.0/24 (natb), 198.51.100.0/24 (r); LANs
  10.1.0.0/24 and 10.2.0.0/24. They exist only inside these namespaces.
- x0node daemons run in a, b, r (and a2 when `with_a2`): each has the [overlay] section with a NAT
  part; a and b list the NAT TAP as a mesh interface, r only serves (no mesh interface).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from x0lab.testbed import provision
from x0lab.testbed.bed import READY_RE
from x0lab.testbed.command import sh
from x0node.proto.protocol import NAT_UDP_PORT

_counter = itertools.count()
NAT_PORT = NAT_UDP_PORT
RENDEZVOUS_ADDR = "198.51.100.1"
NAT_KINDS = ("port-preserving", "symmetric")
LINK_UP_RE = re.compile(r"NatLinkUp node=(\S+) path=(\S+)(?: setup_s=(\S+))?")


@dataclass
class Site:
    role: str
    ns: str
    data_dir: pathlib.Path
    pid: int | None = None
    node_id: str = ""
    mesh_addr: str = ""
    proc: Any = None
    log_offset: int = 0


@dataclass
class NatSites:
    run_dir: pathlib.Path
    nat_a: str = "port-preserving"
    nat_b: str = "port-preserving"
    with_a2: bool = False
    encrypt: bool = True
    punch_timeout_s: float = 3.0
    id: str = ""
    namespaces: list[str] = field(default_factory=list)
    nodes: dict[str, Site] = field(default_factory=dict)

    def ns(self, role: str) -> str:
        return f"{self.id}-{role}"

    # --- build ----------------------------------------------------------------------------------------

    def up(self) -> NatSites:
        if self.nat_a not in NAT_KINDS or self.nat_b not in NAT_KINDS:
            raise ValueError(f"NAT kinds are {NAT_KINDS}")
        self.id = f"x0n{os.getpid() % 100000}{next(_counter)}{secrets.token_hex(2)}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build()
            self._start_daemons()
        except BaseException:
            self.down()
            raise
        return self

    def _add_ns(self, role: str) -> str:
        name = self.ns(role)
        self.namespaces.append(name)
        sh("ip", "netns", "add", name)
        sh("ip", "link", "set", "lo", "up", ns=name)
        sh("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
           "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", ns=name)
        return name

    def _veth(self, a: str, b: str, name_a: str, name_b: str, addr_a: str | None, addr_b: str | None) -> None:
        sh("ip", "link", "add", name_a, "netns", self.ns(a), "type", "veth", "peer", "name", name_b, "netns",
           self.ns(b))
        for role, name, addr in ((a, name_a, addr_a), (b, name_b, addr_b)):
            if addr:
                sh("ip", "addr", "add", addr, "dev", name, ns=self.ns(role))
            sh("ip", "link", "set", name, "up", ns=self.ns(role))

    def _build(self) -> None:
        roles = ["inet", "r", "nata", "natb", "a", "b"] + (["a2"] if self.with_a2 else [])
        for role in roles:
            self._add_ns(role)
        self._veth("inet", "r", "r0", "wan", "198.51.100.254/24", f"{RENDEZVOUS_ADDR}/24")
        self._veth("inet", "nata", "a0", "wan", "100.64.1.254/24", "100.64.1.1/24")
        self._veth("inet", "natb", "b0", "wan", "100.64.2.254/24", "100.64.2.1/24")
        self._veth("nata", "a", "lan", "up0", "10.1.0.254/24", "10.1.0.1/24")
        self._veth("natb", "b", "lan", "up0", "10.2.0.254/24", "10.2.0.1/24")
        sh("ip", "route", "add", "default", "via", "198.51.100.254", ns=self.ns("r"))
        for site in ("a", "b"):
            n = 1 if site == "a" else 2
            sh("ip", "route", "add", "default", "via", f"100.64.{n}.254", ns=self.ns(f"nat{site}"))
            sh("ip", "route", "add", "default", "via", f"10.{n}.0.254", ns=self.ns(site))
            kind = self.nat_a if site == "a" else self.nat_b
            flags = " fully-random" if kind == "symmetric" else ""
            script = (f"table ip x0nat {{\n chain post {{\n  type nat hook postrouting priority 100; policy accept;\n"
                      f"  oifname \"wan\" masquerade{flags}\n }}\n"
                      f" chain filter_forward {{\n  type filter hook forward priority 0; policy drop;\n"
                      f"  iifname \"lan\" accept\n  ct state established,related accept\n }}\n}}\n")
            sh("nft", "-f", "-", ns=self.ns(f"nat{site}"), input=script)
        if self.with_a2:
            self._veth("a", "a2", "m2", "m1", None, None)

    # --- daemons ------------------------------------------------------------------------------------------

    def _config(self, role: str) -> str:
        from x0node.daemon.config import dump_toml

        site = self.nodes[role]
        interfaces = {"a": ["x0nat"] + (["m2"] if self.with_a2 else []), "b": ["x0nat"], "a2": ["m1"], "r": []}[role]
        nat: dict[str, Any] = {"listen": f"0.0.0.0:{NAT_PORT}", "punch_timeout_s": self.punch_timeout_s,
                               "keepalive_s": 5.0}
        if role in ("a", "b"):
            nat.update(rendezvous=[f"{RENDEZVOUS_ADDR}:{NAT_PORT}"], serve=False)
        overlay: dict[str, Any] = {"encrypt": self.encrypt}
        if role != "a2":
            overlay["nat"] = nat
        doc = {"node": {"data_dir": str(site.data_dir), "interfaces": interfaces, "log_level": "info"},
               "overlay": overlay}
        return dump_toml(doc)

    def _start_daemons(self) -> None:
        anchor = provision.mesh_anchor(self.run_dir)
        roles = ["r", "a", "b"] + (["a2"] if self.with_a2 else [])
        for role in roles:
            d = self.run_dir / role
            provision.provision_node(d, anchor)
            self.nodes[role] = Site(role, self.ns(role), d)
        for role in roles:
            self.start(role)
        self.wait_ready(roles)

    def log_path(self, role: str) -> pathlib.Path:
        return self.nodes[role].data_dir / "x0node.log"

    def start(self, role: str) -> None:
        site = self.nodes[role]
        cfg = site.data_dir / "x0node.toml"
        cfg.write_text(self._config(role))
        logfile = self.log_path(role)
        with open(logfile, "ab") as out:
            site.log_offset = out.tell()
            site.proc = subprocess.Popen(["ip", "netns", "exec", site.ns, sys.executable, "-m", "x0node", "run",
                                          "--config", str(cfg)], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, cwd=site.data_dir)
        site.pid = site.proc.pid

    def log_text(self, role: str) -> str:
        site = self.nodes[role]
        with open(self.log_path(role), "rb") as fh:
            fh.seek(site.log_offset)
            return fh.read().decode(errors="replace")

    def wait_ready(self, roles: list[str], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        todo = set(roles)
        while todo:
            for role in list(todo):
                site = self.nodes[role]
                if site.proc.poll() is not None:
                    raise RuntimeError(f"{role} exited:\n{self.log_text(role)[-2000:]}")
                m = READY_RE.search(self.log_text(role))
                if m:
                    site.node_id, site.mesh_addr = m.group(1), m.group(2)
                    todo.discard(role)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sorted(todo)} not ready")
            time.sleep(0.02)

    def link_up(self, role: str, peer_role: str) -> tuple[str, float | None] | None:
        """(path, punch setup seconds) of the latest NatLinkUp `role` logged for `peer_role`, or None."""
        peer = self.nodes[peer_role].node_id
        found = None
        for m in LINK_UP_RE.finditer(self.log_text(role)):
            if m.group(1) == peer:
                found = (m.group(2), float(m.group(3)) if m.group(3) else None)
        return found

    def wait_link(self, role: str, peer_role: str, timeout_s: float) -> tuple[str, float | None] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.link_up(role, peer_role)
            if got is not None:
                return got
            time.sleep(0.02)
        return None

    def exec(self, role: str, *cmd: str, check: bool = True, timeout: float = 30.0) -> str:
        return sh(*cmd, ns=self.ns(role), check=check, timeout=timeout)

    def stop(self, role: str) -> None:
        site = self.nodes.get(role)
        if site is None or site.proc is None:
            return
        if site.proc.poll() is None:
            site.proc.send_signal(signal.SIGTERM)
            try:
                site.proc.wait(5)
            except subprocess.TimeoutExpired:
                site.proc.kill()
                site.proc.wait()
        site.proc = None
        site.pid = None

    def down(self) -> None:
        for role in list(self.nodes):
            with contextlib.suppress(Exception):
                self.stop(role)
        existing = set(sh("ip", "netns", "list", check=False).split())
        for name in reversed(self.namespaces):
            if name not in existing:
                continue
            for pid in sh("ip", "netns", "pids", name, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
