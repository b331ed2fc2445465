"""A mesh of network namespaces joined by veth pairs, each running a routing daemon.

Rules and invariants:
- Everything a testbed creates is named from its id (`x0b<pid><n><random>`), unique per run, and
  recorded in `<run_dir>/state.json` (written temp + fsync + rename) before it is created; `down()`
  removes exactly what is recorded: stressor and daemon processes by PID (after checking the PID still
  runs our command line), per-node cgroups (killing what is left in them), our nftables tables, and
  namespaces by name (their veths and qdiscs go with them). Nothing is written outside the namespaces,
  our own cgroups and the run directory.
- Node k (1..N) lives in namespace `<id>-n<k>`; its interface towards node j is `m<j>`. Both ends of a
  veth are created directly inside their namespaces, so the host's interface list is never touched.
- In each namespace IPv6 forwarding is on and DAD is off before any veth appears (link-local addresses
  usable at once); nftables tables named `x0tb_*` hold fault rules and control-traffic counters.
- Where cgroup v1 `cpu` and `memory` are mounted, each daemon runs in its node's own groups
  (`cgroups.py`) from its first instruction, so the fault lab can cap or squeeze one node.
- Faults (`faults.py` lists them with their heals and the ground truth they log): one per link or
  node at a time; `heal` undoes one, `restart` starts a killed node again with the same key and data.
  `fault_links` / `heal_links` set or undo link-silent or loss on many links in one step (one nft
  transaction per namespace, all released together), each link with its own record.
- Daemons: `x0node` (the daemon from this tree, with the testbed's trust anchor), `babeld` (the Debian
  package; pid and state files in the run directory) or `none`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import pathlib
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from x0lab.testbed import cgroups, faults
from x0lab.testbed.command import TestbedError, sh
from x0lab.testbed.topology import Topology, parse
from x0node.io.atomicfile import write_atomic

log = logging.getLogger("x0lab.testbed")

_counter = itertools.count()
READY_RE = re.compile(r"x0node ready node_id=(\S+) mesh_addr=(\S+)")
BABEL_PORT = 6696
BABEL_PROTOCOL = 42  # rtnetlink protocol number babeld installs its routes with
BABEL_ULA_PREFIX = "fd78:b0b0:6b14::"  # testbed-assigned /128 per node when running babeld
DAEMON_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
COUNT_TABLE = "x0tb_count"
OUR_TABLES = (("netdev", faults.FAULT_TABLE), ("inet", faults.NODE_TABLE), ("inet", COUNT_TABLE))
DAEMONS = ("x0node", "babeld", "none")
DEFAULT_WEB_PORT = 8080


def _pid_alive(pid: int, marker: str) -> bool:
    """True if pid runs and its command line contains marker (protects against PID reuse)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def proc_stat(pid: int) -> tuple[float, float] | None:
    """(cpu seconds user+system, rss MB) of a process, or None."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return cpu, rss_kb / 1024


@dataclass
class NodeInfo:
    index: int
    ns: str
    ifaces: dict[int, str]  # neighbour index -> interface name in this namespace
    data_dir: str
    pid: int | None = None
    marker: str = ""
    node_id: str | None = None
    mesh_addr: str | None = None
    api: str | None = None
    cgroups: dict[str, dict[str, str]] = field(default_factory=dict)  # controller -> node/daemon/hog -> dir

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "ns": self.ns, "ifaces": {str(k): v for k, v in self.ifaces.items()},
            "data_dir": self.data_dir, "pid": self.pid, "marker": self.marker, "node_id": self.node_id,
            "mesh_addr": self.mesh_addr, "api": self.api, "cgroups": self.cgroups,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeInfo:
        return cls(
            index=d["index"], ns=d["ns"], ifaces={int(k): v for k, v in d["ifaces"].items()},
            data_dir=d["data_dir"], pid=d.get("pid"), marker=d.get("marker", ""), node_id=d.get("node_id"),
            mesh_addr=d.get("mesh_addr"), api=d.get("api"), cgroups=d.get("cgroups", {}),
        )


class Testbed:
    """Create with `up(...)` (or `Testbed.create` + `start_all`), reopen with `Testbed.open(run_dir)`."""

    __test__ = False  # not a pytest test class

    def __init__(self, run_dir: pathlib.Path, state: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.state = state
        for key, empty in (("faults", {}), ("stressors", {}), ("cgroups_created", []), ("fault_seq", 0)):
            state.setdefault(key, empty)  # a state file written before the fault lab had these
        self.nodes: dict[int, NodeInfo] = {
            int(k): NodeInfo.from_dict(v) for k, v in state.get("nodes", {}).items()
        }
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # daemons started by this process
        self._stressors: dict[str, subprocess.Popen[bytes]] = {}  # stressors started by this process

    # --- persistence -------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.state["id"]

    @property
    def daemon(self) -> str:
        return self.state["daemon"]

    @property
    def topology(self) -> Topology:
        return Topology(self.state["topology"], self.state["size"], tuple(tuple(x) for x in self.state["links"]))  # type: ignore[misc]

    def save(self) -> None:
        self.state["nodes"] = {str(k): v.as_dict() for k, v in self.nodes.items()}
        write_atomic(self.run_dir / "state.json", json.dumps(self.state, indent=1).encode())

    def reload(self) -> None:
        """Read the state file again (another process, such as the `x0node testbed` CLI, may have added
        faults, stressors or restarted daemons since); daemons this process started stay known."""
        path = self.run_dir / "state.json"
        if path.exists():
            fresh = Testbed.open(self.run_dir)
            self.state, self.nodes = fresh.state, fresh.nodes

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> Testbed:
        run_dir = pathlib.Path(run_dir)
        path = run_dir / "state.json"
        if not path.exists():
            raise TestbedError(f"no testbed in {run_dir} (run `x0node testbed up` first)")
        return cls(run_dir, json.loads(path.read_text()))

    # --- bring up -----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        run_dir: str | os.PathLike[str],
        topology: str | Topology,
        daemon: str = "x0node",
        routing: dict[str, Any] | None = None,
        web: bool = False,
        babel_hello_s: float | None = None,
        links_down: bool = False,
        sections: dict[str, dict[str, Any]] | None = None,
        node_sections: dict[int, dict[str, dict[str, Any]]] | None = None,
    ) -> Testbed:
        """Create namespaces and links (not the daemons: call `start_all`)."""
        if daemon not in DAEMONS:
            raise TestbedError(f"unknown daemon {daemon!r}; use one of {', '.join(DAEMONS)}")
        topo = parse(topology) if isinstance(topology, str) else topology
        run_dir = pathlib.Path(run_dir).resolve()
        if (run_dir / "state.json").exists():
            raise TestbedError(f"{run_dir} already holds a testbed; `x0node testbed down` it first")
        run_dir.mkdir(parents=True, exist_ok=True)
        # pid + per-process counter + random: unique among concurrent runs, and a reused pid of an
        # earlier, still-running testbed cannot collide either
        tb_id = f"x0b{os.getpid() % 100000}{next(_counter)}{secrets.token_hex(2)}"
        state: dict[str, Any] = {
            "id": tb_id, "topology": topo.spec, "size": topo.nodes, "links": [list(x) for x in topo.links],
            "daemon": daemon, "routing": routing or {}, "web": web, "babel_hello_s": babel_hello_s,
            "faults": {}, "created": time.time(), "sections": sections or {},
            "node_sections": {str(k): v for k, v in (node_sections or {}).items()}, "boot_id": faults.boot_id(),
            "fault_seq": 0, "cgroups_created": [], "stressors": {},
        }
        bed = cls(run_dir, state)
        for k in range(1, topo.nodes + 1):
            ifaces = {j: f"m{j}" for j in topo.neighbours(k)}
            bed.nodes[k] = NodeInfo(k, f"{tb_id}-n{k}", ifaces, str(run_dir / f"n{k}"))
        bed.state["namespaces_created"] = []
        bed.save()
        try:
            bed._build(links_down)
        except BaseException:
            bed.down()
            raise
        return bed

    def _build(self, links_down: bool) -> None:
        for node in self.nodes.values():
            sh("ip", "netns", "add", node.ns)  # fails if the name exists: then it is not ours to delete
            self.state["namespaces_created"].append(node.ns)
            self.save()
            pathlib.Path(node.data_dir).mkdir(parents=True, exist_ok=True)
            sh("sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1",
               "net.ipv6.conf.default.accept_ra=0", ns=node.ns)
            sh("ip", "link", "set", "lo", "up", ns=node.ns)
        batch = []
        for a, b in self.topology.links:
            na, nb = self.nodes[a], self.nodes[b]
            batch.append(f"link add {na.ifaces[b]} netns {na.ns} type veth peer name {nb.ifaces[a]} netns {nb.ns}")
        sh("ip", "-batch", "-", input="\n".join(batch) + "\n")
        for node in self.nodes.values():
            lines = [] if links_down else [f"link set {ifname} up" for ifname in node.ifaces.values()]
            if lines:
                sh("ip", "-n", node.ns, "-batch", "-", input="\n".join(lines) + "\n")
            self._install_counters(node)

    def links_up(self) -> None:
        for node in self.nodes.values():
            lines = [f"link set {ifname} up" for ifname in node.ifaces.values()]
            sh("ip", "-n", node.ns, "-batch", "-", input="\n".join(lines) + "\n")

    def _install_counters(self, node: NodeInfo) -> None:
        rules = []
        for ifname in node.ifaces.values():
            for port in (BABEL_PORT, self._x0_port()):
                rules.append(f'    oifname "{ifname}" udp dport {port} counter')
        script = (
            f"table inet {COUNT_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
            + "\n".join(rules) + "\n  }\n}\n"
        )
        sh("nft", "-f", "-", ns=node.ns, input=script)

    @staticmethod
    def _x0_port() -> int:
        from x0node.proto.protocol import MESH_UDP_PORT

        return MESH_UDP_PORT

    # --- daemons ---------------------------------------------------------------------------------------

    def start_all(self, wait: bool = True, timeout_s: float = DAEMON_READY_TIMEOUT_S,
                  exclude: tuple[int, ...] = ()) -> None:
        """Provision keys (x0node) and start every node's daemon but those in `exclude`."""
        if self.daemon == "none":
            return
        if self.daemon == "x0node":
            self._provision_trust()
        which = [k for k in self.nodes if k not in exclude]
        for k in which:
            self.start(k, wait=False)
        if wait:
            self.wait_ready(which, timeout_s=timeout_s)

    def _provision_trust(self) -> None:
        from x0lab.testbed import provision

        provision.provision_mesh(self)

    def node(self, name: str | int) -> NodeInfo:
        text = str(name)
        text = text[1:] if text.startswith("n") else text
        try:
            k = int(text)
        except ValueError:
            raise TestbedError(f"unknown node {name!r}; use 1..{len(self.nodes)} or n1..n{len(self.nodes)}") from None
        if k not in self.nodes:
            raise TestbedError(f"unknown node {name!r}; use 1..{len(self.nodes)}")
        return self.nodes[k]

    def config_path(self, node: NodeInfo) -> pathlib.Path:
        return pathlib.Path(node.data_dir) / "x0node.toml"

    def log_path(self, node: NodeInfo) -> pathlib.Path:
        return pathlib.Path(node.data_dir) / ("babeld.log" if self.daemon == "babeld" else "x0node.log")

    def write_x0node_config(self, node: NodeInfo, extra: str = "") -> pathlib.Path:
        from x0node.daemon.config import dump_toml

        doc: dict[str, Any] = {
            "node": {"data_dir": node.data_dir, "interfaces": list(node.ifaces.values()), "log_level": "info"},
        }
        trust = self.state.get("trust")
        if trust:
            doc["trust"] = trust
        if self.state.get("routing"):
            doc["routing"] = dict(self.state["routing"])
        if self.state.get("web"):
            doc["web"] = {"listen": "::", "port": DEFAULT_WEB_PORT}
        for name, values in self.state.get("sections", {}).items():  # extra service sections, e.g. [state]
            doc[name] = dict(values)
        for name, values in self.state.get("node_sections", {}).get(str(node.index), {}).items():  # per node
            doc[name] = dict(doc.get(name, {})) | dict(values)
        path = self.config_path(node)
        write_atomic(path, (dump_toml(doc) + extra).encode(), 0o644)
        return path

    def _babeld_command(self, node: NodeInfo) -> list[str]:
        d = pathlib.Path(node.data_dir)
        cmd = [
            "babeld", "-I", str(d / "babeld.pid"), "-S", str(d / "babel-state"),
            "-C", f"redistribute local ip {BABEL_ULA_PREFIX}/48 ge 128 allow", "-C", "redistribute local deny",
        ]
        hello = self.state.get("babel_hello_s")
        if hello:
            cmd += ["-C", f"default hello-interval {hello:g}"]
        return cmd + list(node.ifaces.values())

    def start(self, name: str | int, wait: bool = True) -> NodeInfo:
        node = self.node(name)
        if self.alive(node.index):
            return node
        logfile = self.log_path(node)
        if self.daemon == "x0node":
            cfg = self.write_x0node_config(node)
            cmd = [sys.executable, "-m", "x0node", "run", "--config", str(cfg)]
            node.marker = str(cfg)
        elif self.daemon == "babeld":
            addr = f"{BABEL_ULA_PREFIX}{node.index:x}"
            sh("ip", "-6", "addr", "replace", f"{addr}/128", "dev", "lo", ns=node.ns)
            with contextlib.suppress(FileNotFoundError):
                (pathlib.Path(node.data_dir) / "babeld.pid").unlink()
            cmd = self._babeld_command(node)
            node.marker = str(pathlib.Path(node.data_dir) / "babeld.pid")
            node.mesh_addr = addr
            node.node_id = f"babel-{node.index}"
        else:
            raise TestbedError("this testbed runs no daemon")
        full = ["ip", "netns", "exec", node.ns, *cmd]
        if cgroups.available():
            full = ["ip", "netns", "exec", node.ns, *cgroups.mount_inside(cmd)]
            groups = self.node_cgroups(node)
            full = cgroups.wrap([dirs["daemon"] for dirs in groups.values()], full)
        with open(logfile, "ab") as out:
            out.write(f"--- start {time.time():.3f}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                full, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd=node.data_dir,
            )
        node.pid = proc.pid
        self._procs[node.index] = proc
        self.state.setdefault("log_offsets", {})[str(node.index)] = logfile.stat().st_size
        self.save()
        if wait:
            self.wait_ready([node.index])
        return node

    def wait_ready(self, which: list[int] | None = None, timeout_s: float = DAEMON_READY_TIMEOUT_S) -> None:
        """Wait for the ready line of each x0node daemon (babeld: for its pid file)."""
        todo = set(which or self.nodes)
        deadline = time.monotonic() + timeout_s
        offsets = self.state.get("log_offsets", {})
        while todo:
            for k in list(todo):
                node = self.nodes[k]
                if not self.alive(k):
                    tail = self.log_path(node).read_text(errors="replace")[-2000:]
                    raise TestbedError(f"node {k} daemon exited:\n{tail}")
                if self.daemon == "babeld":
                    if (pathlib.Path(node.data_dir) / "babeld.pid").exists():
                        todo.discard(k)
                    continue
                with open(self.log_path(node), "rb") as fh:
                    fh.seek(int(offsets.get(str(k), 0)))
                    text = fh.read().decode(errors="replace")
                m = READY_RE.search(text)
                if m:
                    node.node_id, node.mesh_addr = m.group(1), m.group(2)
                    if self.state.get("web"):
                        node.api = f"http://[{node.mesh_addr}]:{DEFAULT_WEB_PORT}/"
                    todo.discard(k)
            if not todo:
                break
            if time.monotonic() > deadline:
                raise TestbedError(f"nodes {sorted(todo)} not ready after {timeout_s:.0f} s")
            time.sleep(0.02)
        self.save()

    def alive(self, name: str | int) -> bool:
        node = self.node(name)
        if node.pid is None:
            return False
        proc = self._procs.get(node.index)
        if proc is not None and proc.pid == node.pid:
            return proc.poll() is None
        return _pid_alive(node.pid, node.marker)

    def stop(self, name: str | int, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> None:
        node = self.node(name)
        if node.pid is None:
            return
        if self.alive(node.index):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, sig)
                os.kill(node.pid, signal.SIGCONT)  # a hung (stopped) daemon acts on the signal only when resumed
            deadline = time.monotonic() + timeout_s
            while self.alive(node.index) and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.alive(node.index):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
        proc = self._procs.pop(node.index, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        node.pid = None
        self.save()

    # --- cgroups and stressors ------------------------------------------------------------------------

    def node_cgroups(self, node: NodeInfo) -> dict[str, dict[str, pathlib.Path]]:
        """The node's groups per controller ("node", "daemon", "hog"), created (and recorded) on first use."""
        if not cgroups.available():
            raise TestbedError("this host has no cgroup v1 cpu and memory hierarchies (needed for cpu-hog, mem-pressure)")
        if not node.cgroups:
            planned = cgroups.plan(self.id, node.index)
            node.cgroups = {c: {k: str(v) for k, v in dirs.items()} for c, dirs in planned.items()}
            for dirs in planned.values():
                for path in (dirs["node"].parent, dirs["node"], *(dirs[leaf] for leaf in cgroups.LEAVES)):
                    if str(path) not in self.state["cgroups_created"]:
                        self.state["cgroups_created"].append(str(path))
            self.save()
            for dirs in planned.values():
                for path in (dirs["node"].parent, dirs["node"], *(dirs[leaf] for leaf in cgroups.LEAVES)):
                    cgroups.create(path)
        return {c: {k: pathlib.Path(v) for k, v in dirs.items()} for c, dirs in node.cgroups.items()}

    def daemon_pid(self, node: NodeInfo) -> int:
        if not self.alive(node.index) or node.pid is None:
            raise TestbedError(f"node {node.index} runs no daemon")
        return node.pid

    def spawn_stressor(self, key: str, args: list[str], node: NodeInfo | None = None) -> dict[str, Any]:
        """Start a stressor (in the node's `hog` groups when given), recorded by pid and tag before it
        runs; returns the JSON line it prints once its effect began."""
        tag = f"{self.id}-{key}"
        cmd = faults.stressor_command(tag, args)
        if node is not None:
            groups = self.node_cgroups(node)
            cmd = cgroups.wrap([dirs["hog"] for dirs in groups.values()], cmd)
        errlog = self.run_dir / f"stressor-{key}.log"
        with open(errlog, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True)
        self._stressors[key] = proc
        self.state["stressors"][key] = {"pid": proc.pid, "marker": tag}
        self.save()
        assert proc.stdout is not None
        line = b""
        deadline = time.monotonic() + faults.READY_TIMEOUT_S
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        try:
            return json.loads(line)
        except ValueError:
            self.stop_stressor(key)
            err = errlog.read_text(errors="replace")[-2000:]
            raise TestbedError(f"stressor {' '.join(args[:1])} did not start: {err or line!r}") from None

    def stop_stressor(self, key: str) -> bool:
        """SIGTERM the stressor (SIGKILL after STOP_TIMEOUT_S) and wait for it; True if it was still running."""
        info = self.state["stressors"].pop(key, None)
        proc = self._stressors.pop(key, None)
        was_alive = False
        if info is not None and _pid_alive(info["pid"], info["marker"]):
            was_alive = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(info["pid"], signal.SIGTERM)
            if not faults.wait_exit(info["pid"], STOP_TIMEOUT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info["pid"], signal.SIGKILL)
                faults.wait_exit(info["pid"], STOP_TIMEOUT_S)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
            if proc.stdout is not None:
                proc.stdout.close()
        self.save()
        return was_alive

    # --- faults ----------------------------------------------------------------------------------------

    def _link_ends(self, a: str | int, b: str | int) -> tuple[NodeInfo, NodeInfo]:
        na, nb = self.node(a), self.node(b)
        if nb.index not in na.ifaces:
            raise TestbedError(f"nodes {na.index} and {nb.index} share no link")
        return na, nb

    def fault(self, kind: str, a: str | int, b: str | int | None = None, **params: Any) -> dict[str, Any]:
        """Inject one fault (see faults.py); returns its record, whose `start` is the ground-truth stamp."""
        fk = faults.KINDS.get(kind)
        if fk is None:
            raise TestbedError(f"unknown fault {kind!r}; use one of {', '.join(faults.KINDS)}")
        try:
            checked = faults.validate(kind, params)
        except ValueError as exc:
            raise TestbedError(str(exc)) from None
        if fk.target == "link":
            if b is None:
                raise TestbedError(f"fault {kind} needs two nodes")
            na, nb = self._link_ends(a, b)
        else:
            if b is not None:
                raise TestbedError(f"fault {kind} takes one node")
            na, nb = self.node(a), None
        if fk.needs_daemon and self.daemon == "none":
            raise TestbedError(f"fault {kind} needs a daemon; this testbed runs none")
        key = faults.target_key(kind, na.index, None if nb is None else nb.index)
        replaced = self.state["faults"].get(key)
        if replaced is not None and not faults.replaces(replaced["kind"], kind):
            raise TestbedError(f"{key} already has fault {replaced['kind']}; heal it first")
        self.state["fault_seq"] = int(self.state.get("fault_seq", 0)) + 1
        fault_id = f"f{self.state['fault_seq']}"
        record: dict[str, Any] = {
            "id": fault_id, "kind": kind, "target": key, "a": na.index, "b": None if nb is None else nb.index,
            "params": checked, "start": None, "start_details": {},
        }
        self.state["faults"][key] = record  # recorded before the change: heal and down find a half-made one
        self.save()
        try:
            record["start"], record["start_details"] = faults.apply(self, kind, na, nb, checked, fault_id)
        except BaseException:
            if replaced is not None:
                self.state["faults"][key] = replaced  # the rule it was replacing may still stand
            else:
                if kind != "kill":  # undo whatever part was made (every other heal is idempotent)
                    with contextlib.suppress(Exception):
                        faults.heal(self, record)
                self.state["faults"].pop(key, None)
            self.save()
            raise
        self.save()
        if replaced is not None:  # the same chains now hold the new rule: the old fault ended with it
            faults.log_event(self.run_dir, {"event": "end", "id": replaced["id"], "testbed": self.id,
                                            "fault": replaced["kind"], "target": key, **record["start"],
                                            "replaced_by": fault_id})
        faults.log_event(self.run_dir, {"event": "start", "id": fault_id, "testbed": self.id, "fault": kind,
                                        "target": key, "params": checked, **record["start"],
                                        "boot_id": self.state.get("boot_id", "")})
        return record

    def fault_links(self, kind: str, links: list[tuple[int, int]], **params: Any) -> float:
        """`link-silent` or `loss` on many links at once: one nft transaction per namespace, all released
        together (faults.nft_batch), so a partition appears or heals on all its links together. Each link
        gets its own record and ground-truth entries, as from `fault`. Returns the wall time of the release."""
        if faults.REPLACES.get(kind) != "ingress":
            batchable = sorted(k for k, obj in faults.REPLACES.items() if obj == "ingress")
            raise TestbedError(f"fault_links takes {' or '.join(batchable)}, not {kind!r}")
        try:
            checked = faults.validate(kind, params)
        except ValueError as exc:
            raise TestbedError(str(exc)) from None
        rule = "drop" if kind == "link-silent" else f"numgen random mod 100 < {int(round(checked['percent']))} drop"
        ends = list({faults.target_key(kind, x.index, y.index): (x, y)
                     for x, y in (self._link_ends(a, b) for a, b in links)}.values())  # each link once
        for na, nb in ends:
            old = self.state["faults"].get(faults.target_key(kind, na.index, nb.index))
            if old is not None and not faults.replaces(old["kind"], kind):
                raise TestbedError(f"{old['target']} already has fault {old['kind']}; heal it first")
        made: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        scripts: dict[str, str] = {}
        for na, nb in ends:
            key = faults.target_key(kind, na.index, nb.index)
            self.state["fault_seq"] = int(self.state.get("fault_seq", 0)) + 1
            record: dict[str, Any] = {"id": f"f{self.state['fault_seq']}", "kind": kind, "target": key,
                                      "a": na.index, "b": nb.index, "params": checked, "start": None,
                                      "start_details": {}}
            made.append((record, self.state["faults"].get(key)))
            self.state["faults"][key] = record  # recorded before the change
            for x, y in ((na, nb), (nb, na)):
                scripts[x.ns] = scripts.get(x.ns, "") + faults.ingress_script(x, y, rule)
        self.save()
        try:
            released = faults.nft_batch(scripts)
        except BaseException:
            for record, replaced in made:
                if replaced is not None:
                    self.state["faults"][record["target"]] = replaced
                else:
                    with contextlib.suppress(Exception):
                        faults.heal(self, record)
                    self.state["faults"].pop(record["target"], None)
            self.save()
            raise
        start = faults.stamp(released)
        for record, replaced in made:
            record["start"] = start
            if replaced is not None:
                faults.log_event(self.run_dir, {"event": "end", "id": replaced["id"], "testbed": self.id,
                                                "fault": replaced["kind"], "target": record["target"], **start,
                                                "replaced_by": record["id"]})
            faults.log_event(self.run_dir, {"event": "start", "id": record["id"], "testbed": self.id, "fault": kind,
                                            "target": record["target"], "params": checked, **start,
                                            "boot_id": self.state.get("boot_id", "")})
        self.save()
        return start["wall"] - start["uncertainty_s"]

    def heal_links(self, links: list[tuple[int, int]]) -> float:
        """Undo the faults of many links at once: `link-silent` and `loss` in one nft transaction per
        namespace, all released together (others one by one, as `heal`). Returns the wall time of the
        release."""
        scripts: dict[str, str] = {}
        healed: list[dict[str, Any]] = []
        for a, b in links:
            na, nb = self._link_ends(a, b)
            record = self.state["faults"].get(f"{min(na.index, nb.index)}-{max(na.index, nb.index)}")
            if record is None or any(r is record for r in healed):  # none, or named twice
                continue
            if faults.REPLACES.get(record["kind"]) != "ingress":
                self.heal(a, b)
                continue
            for x, y in ((na, nb), (nb, na)):
                scripts[x.ns] = scripts.get(x.ns, "") + faults.ingress_script(x, y, None)
            healed.append(record)
        released = faults.nft_batch(scripts) if scripts else time.monotonic()
        end = faults.stamp(released)
        for record in healed:
            record["end"], record["end_details"] = end, {}
            self.state["faults"].pop(record["target"], None)
            faults.log_event(self.run_dir, {"event": "end", "id": record["id"], "testbed": self.id,
                                            "fault": record["kind"], "target": record["target"], **end,
                                            "details": {}})
        self.save()
        return end["wall"] - end["uncertainty_s"]

    def heal(self, a: str | int, b: str | int | None = None, wait_ready: bool = True) -> dict[str, Any] | None:
        """Undo the fault on link a-b (or node a); returns its completed record, None if there was none."""
        if b is None:
            key = f"n{self.node(a).index}"
        else:
            na, nb = self._link_ends(a, b)
            key = f"{min(na.index, nb.index)}-{max(na.index, nb.index)}"
        record = self.state["faults"].get(key)
        if record is None:
            return None
        record["end"], record["end_details"] = faults.heal(self, record, wait_ready=wait_ready)
        self.state["faults"].pop(key, None)
        self.save()
        faults.log_event(self.run_dir, {"event": "end", "id": record["id"], "testbed": self.id, "fault": record["kind"],
                                        "target": key, **record["end"], "details": record["end_details"]})
        return record

    def restart(self, name: str | int) -> NodeInfo:
        node = self.node(name)
        if self.state["faults"].get(f"n{node.index}", {}).get("kind") == "kill":
            self.heal(node.index)
            return node
        return self.start(node.index)

    # --- observation -------------------------------------------------------------------------------

    def route_protocol(self) -> tuple[int, str]:
        """(protocol, table) the testbed's daemon installs routes with."""
        if self.daemon == "babeld":
            return BABEL_PROTOCOL, "main"
        from x0node.daemon.config import DEFAULTS

        return DEFAULTS["kernel"]["protocol"], str(DEFAULTS["kernel"]["table"])

    def routes(self, name: str | int) -> list[dict[str, Any]]:
        node = self.node(name)
        proto, table = self.route_protocol()
        out = sh("ip", "-j", "-6", "route", "show", "table", table, "proto", str(proto), ns=node.ns)
        return json.loads(out or "[]")

    def control_bytes(self) -> dict[int, int]:
        """Bytes sent by each node's daemon on its mesh interfaces to the routing port (IPv6 packets)."""
        port = BABEL_PORT if self.daemon == "babeld" else self._x0_port()
        out: dict[int, int] = {}
        for k, node in self.nodes.items():
            doc = json.loads(sh("nft", "-j", "list", "table", "inet", COUNT_TABLE, ns=node.ns))
            total = 0
            for item in doc.get("nftables", []):
                rule = item.get("rule")
                if not rule:
                    continue
                exprs = rule.get("expr", [])
                if not any(e.get("match", {}).get("right") == port for e in exprs):
                    continue
                for e in exprs:
                    if "counter" in e:
                        total += e["counter"]["bytes"]
            out[k] = total
        return out

    def process_stats(self) -> dict[int, tuple[float, float]]:
        """Per node: (cpu seconds so far, rss MB) of its daemon."""
        out = {}
        for k, node in self.nodes.items():
            if node.pid is None:
                continue
            pid = node.pid
            st = proc_stat(pid)
            if st is not None:
                out[k] = st
        return out

    def status(self) -> dict[str, Any]:
        nodes = []
        for k, node in sorted(self.nodes.items()):
            alive = self.alive(k)
            nodes.append({
                "node": k, "ns": node.ns, "pid": node.pid if alive else None, "alive": alive,
                "node_id": node.node_id, "mesh_addr": node.mesh_addr, "api": node.api,
                "interfaces": {f"n{j}": ifname for j, ifname in sorted(node.ifaces.items())},
                "log": str(self.log_path(node)),
            })
        return {
            "id": self.id, "run_dir": str(self.run_dir), "daemon": self.daemon, "topology": self.state["topology"],
            "links": self.state["links"], "faults": self.state["faults"], "nodes": nodes,
        }

    def exec(self, name: str | int, *cmd: str, timeout: float = 30.0, check: bool = True) -> str:
        return sh(*cmd, ns=self.node(name).ns, timeout=timeout, check=check)

    # --- teardown --------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop stressors and daemons (by PID), remove our cgroups, nftables tables and namespaces.

        Faults still active end here: their end is logged once everything is gone ("reason": "down")."""
        t0 = time.monotonic()
        for key in list(self.state.get("stressors", {})):
            try:
                self.stop_stressor(key)
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping stressor %s: %s", key, exc)
        for k in list(self.nodes):
            try:
                self.stop(k, timeout_s=3.0)
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping node %s: %s", k, exc)
        left = cgroups.remove(self.state.get("cgroups_created", []))
        if left:
            log.warning("cgroups left behind: %s", ", ".join(left))
        self.state["cgroups_created"] = left
        existing = set(sh("ip", "netns", "list", check=False).split())
        for ns in reversed(self.state.get("namespaces_created", [])):
            if ns not in existing:
                continue
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                # only processes we started are expected here; anything left in our namespace is ours too
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            script = "".join(f"add table {fam} {name}\ndelete table {fam} {name}\n" for fam, name in OUR_TABLES)
            sh("nft", "-f", "-", ns=ns, input=script, check=False)
            sh("ip", "netns", "del", ns, check=False)
        self.state["namespaces_created"] = []
        for record in self.state.get("faults", {}).values():
            if record.get("start") is not None:
                faults.log_event(self.run_dir, {"event": "end", "id": record["id"], "testbed": self.id,
                                                "fault": record["kind"], "target": record["target"],
                                                **faults.stamp(t0), "reason": "down"})
        self.state["faults"] = {}
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "state.json").unlink()


def up(run_dir: str | os.PathLike[str], topology: str | Topology, daemon: str = "x0node", **kw: Any) -> Testbed:
    """Create the mesh and start its daemons; on failure everything created is removed again."""
    start_kw = {k: kw.pop(k) for k in ("timeout_s", "exclude") if k in kw}
    bed = Testbed.create(run_dir, topology, daemon, **kw)
    try:
        bed.start_all(**start_kw)
    except BaseException:
        bed.down()
        raise
    return bed
