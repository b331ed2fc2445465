"""`make fleet-demo`: Prometheus and Alertmanager watch a namespace mesh, and an injected fault fires an
alert that both APIs show (docs/fleet.md).

    python -m x0lab.fleet.demo up [--run-dir DIR] [--nodes N] [--fault KIND:NODE] [--shots DIR]
    python -m x0lab.fleet.demo down [--run-dir DIR]

Rules and invariants:
- The mesh is the development testbed (x0lab, `x0node testbed up --web`), with the healing loop in
  observe mode on every node. Prometheus and Alertmanager run as processes (the Debian binaries) in the
  namespace of node 1, which is on the mesh like any router, so they reach every node at its mesh
  address; scrape targets come from `x0node fleet targets` against node 1's own view. They listen on
  that namespace's loopback only; `socat` forwards 127.0.0.1:9090/9093 on the host to them while the
  demo runs (loopback to loopback, nothing else is exposed).
- The rules and Alertmanager routes are the fleet's own files (fleet/prometheus/rules, fleet/alertmanager);
  only intervals are shortened (5 s scrapes and evaluations) so a demo fault fires within a minute.
  A webhook sink in the same namespace records what Alertmanager delivers.
- Every process the demo starts is recorded with its pid in <run_dir>/fleet/demo.json before it is
  waited on; `down` stops exactly those (pid checked against its command line) and then the testbed.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from x0node.fleet.checks import FLEET_DIR
from x0node.io.atomicfile import write_atomic

DEFAULT_RUN_DIR = pathlib.Path("/tmp/x0-fleet-demo")
PROM_PORT, AM_PORT, SINK_PORT, WEB_PORT = 9090, 9093, 9095, 8080
DEMO_INTERVAL = "5s"
READY_TIMEOUT_S = 120.0
ALERT_TIMEOUT_S = 180.0
HEALING = {"mode": "observe", "interval_s": 1.0, "guard_after_boot_s": 0, "guard_after_start_s": 0}


class DemoError(RuntimeError):
    pass


def _ns_cmd(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def _get(ns: str, url: str, timeout_s: float = 10.0) -> Any:
    out = subprocess.run(_ns_cmd(ns, "curl", "-sS", "-g", "--max-time", str(int(timeout_s)), url),
                         capture_output=True, text=True, timeout=timeout_s + 5)
    if out.returncode != 0:
        raise DemoError(f"{url}: {out.stderr.strip()}")
    return json.loads(out.stdout)


class Demo:
    def __init__(self, run_dir: pathlib.Path) -> None:
        self.run_dir = run_dir
        self.dir = run_dir / "fleet"
        self.state_path = self.dir / "demo.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"procs": {}}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, (json.dumps(self.state, indent=1) + "\n").encode(), 0o644)

    # ---- processes ------------------------------------------------------------------------------
    def spawn(self, key: str, cmd: list[str], log_name: str) -> int:
        with open(self.dir / log_name, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.state["procs"][key] = {"pid": proc.pid, "marker": str(self.dir)}
        self.save()
        return proc.pid

    def stop_all(self) -> None:
        for key, p in list(self.state.get("procs", {}).items()):
            pid = p["pid"]
            try:
                cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmdline = ""
            if p["marker"] in cmdline or key.startswith("forward"):
                if cmdline:
                    try:
                        os.killpg(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                    for _ in range(50):
                        if not pathlib.Path(f"/proc/{pid}").exists():
                            break
                        time.sleep(0.1)
            del self.state["procs"][key]
            self.save()

    # ---- configuration --------------------------------------------------------------------------
    def write_configs(self, ns_addr: str) -> None:
        import yaml

        prom = yaml.safe_load((FLEET_DIR / "prometheus" / "prometheus.yml").read_text())
        prom["global"].update({"scrape_interval": DEMO_INTERVAL, "evaluation_interval": DEMO_INTERVAL,
                               "scrape_timeout": "4s"})
        prom["rule_files"] = [str(FLEET_DIR / "prometheus" / "rules" / "*.rules.yml")]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"[::1]:{AM_PORT}"]
        prom["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(self.dir / "targets" / "*.json")]
        prom["scrape_configs"][0]["file_sd_configs"][0]["refresh_interval"] = DEMO_INTERVAL
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
        am = yaml.safe_load((FLEET_DIR / "alertmanager" / "alertmanager.yml").read_text())
        am["route"]["group_wait"] = "5s"
        for r in am["receivers"]:
            for hook in r.get("webhook_configs", []):
                hook["url"] = f"http://[::1]:{SINK_PORT}/alerts"
        am["receivers"][0]["webhook_configs"] = [{"url": f"http://[::1]:{SINK_PORT}/alerts", "send_resolved": True}]
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(am, sort_keys=False))

    # ---- the demo ---------------------------------------------------------------------------------
    def up(self, nodes: int, fault: tuple[str, int], shots: pathlib.Path | None) -> dict[str, Any]:
        from x0lab.testbed import measure
        from x0lab.testbed.bed import Testbed

        for tool in ("prometheus", "prometheus-alertmanager", "curl"):
            if shutil.which(tool) is None:
                raise DemoError(f"{tool} is not installed: `make deps` installs it (mk/fleet.mk)")
        if (self.run_dir / "state.json").exists():
            raise DemoError(f"{self.run_dir} holds a testbed: `python -m x0lab.fleet.demo down` first")
        self.stop_all()  # nothing of an earlier run may still hold its files
        for old in ("prom-data", "am-data", "targets", "notifications.jsonl"):
            path = self.dir / old
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "targets").mkdir(exist_ok=True)
        print(f"mesh: ring of {nodes} namespace nodes (web UI and healing loop on)", flush=True)
        bed = Testbed.create(self.run_dir, f"ring:{nodes}", "x0node", web=True, sections={"healing": HEALING})
        bed.start_all()
        if measure.wait_converged(bed, READY_TIMEOUT_S) is None:
            raise DemoError("the mesh did not converge")
        mon = bed.nodes[1]
        ns = mon.ns
        self.state.update({"ns": ns, "nodes": {str(k): {"node_id": n.node_id, "mesh_addr": n.mesh_addr}
                                                for k, n in bed.nodes.items()}})
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        self.write_configs(mon.mesh_addr or "")
        targets = self.dir / "targets" / "x0node.json"
        source = f"http://[{mon.mesh_addr}]:{WEB_PORT}/metrics"
        self.spawn("targets", _ns_cmd(ns, sys.executable, "-m", "x0node", "fleet", "targets", "--from", source,
                                      "--out", str(targets), "--interval", "10"), "targets.log")
        self.spawn("sink", _ns_cmd(ns, sys.executable, "-m", "x0lab.fleet.demo", "sink", "--port", str(SINK_PORT),
                                   "--out", str(self.dir / "notifications.jsonl")), "sink.log")
        self.spawn("alertmanager", _ns_cmd(ns, "prometheus-alertmanager", f"--config.file={self.dir / 'alertmanager.yml'}",
                                           f"--storage.path={self.dir / 'am-data'}",
                                           f"--web.listen-address=[::1]:{AM_PORT}", "--cluster.listen-address="),
                   "alertmanager.log")
        self.spawn("prometheus", _ns_cmd(ns, "prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                                         f"--storage.tsdb.path={self.dir / 'prom-data'}",
                                         f"--web.listen-address=[::1]:{PROM_PORT}", "--web.enable-lifecycle"),
                   "prometheus.log")
        if shutil.which("socat"):
            for key, port in (("forward-prometheus", PROM_PORT), ("forward-alertmanager", AM_PORT)):
                self.spawn(key, ["socat", f"TCP4-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                                 f"EXEC:ip netns exec {ns} socat STDIO TCP6\\:[\\:\\:1]\\:{port}"], f"{key}.log")
        prom = f"http://[::1]:{PROM_PORT}"
        am = f"http://[::1]:{AM_PORT}"
        self._wait(f"all {nodes} routers scraped", lambda: self._targets_up(ns, prom) == nodes)
        kind, victim = fault
        node = bed.nodes[victim]
        instance = f"[{node.mesh_addr}]:{WEB_PORT}"
        print(f"fault: {kind} on node {victim} ({instance}); x0node testbed fault {kind} {victim}", flush=True)
        bed.fault(kind, victim)
        self.state["fault"] = {"kind": kind, "node": victim, "instance": instance, "at": time.time()}
        self.save()
        t0 = time.monotonic()
        firing = self._wait("X0NodeDown firing in Prometheus",
                            lambda: self._prom_alert(ns, prom, "X0NodeDown", instance), ALERT_TIMEOUT_S)
        t_prom = time.monotonic() - t0
        received = self._wait("the alert in Alertmanager", lambda: self._am_alert(ns, am, "X0NodeDown", instance),
                              ALERT_TIMEOUT_S)
        t_am = time.monotonic() - t0
        delivered = self._wait("the notification at the webhook", lambda: self._delivered("X0NodeDown", instance),
                               ALERT_TIMEOUT_S)
        result = {"alert": "X0NodeDown", "instance": instance, "node_id": node.node_id,
                  "webhook": {"status": delivered["status"], "receiver_log": str(self.dir / "notifications.jsonl")},
                  "prometheus": {"state": firing["state"], "activeAt": firing.get("activeAt"), "after_s": round(t_prom, 1)},
                  "alertmanager": {"receivers": [r["name"] for r in received.get("receivers", [])],
                                   "state": received.get("status", {}).get("state"), "after_s": round(t_am, 1)},
                  "prometheus_url": "http://127.0.0.1:9090/classic/alerts" if shutil.which("socat") else None}
        self.state["result"] = result
        self.save()
        if shots is not None:
            from x0lab.fleet import pictures

            result["pictures"] = [str(p) for p in pictures.take(ns, prom, shots)]
        return result

    def _wait(self, what: str, probe: Any, timeout_s: float = READY_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                got = probe()
            except (DemoError, ValueError, subprocess.TimeoutExpired) as exc:
                got, last = None, exc
            if got:
                print(f"ok: {what}", flush=True)
                return got
            time.sleep(2.0)
        raise DemoError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))

    @staticmethod
    def _targets_up(ns: str, prom: str) -> int:
        data = _get(ns, f"{prom}/api/v1/targets?state=active")
        return sum(1 for t in data["data"]["activeTargets"] if t["health"] == "up" and t["labels"]["job"] == "x0node")

    @staticmethod
    def _prom_alert(ns: str, prom: str, name: str, instance: str) -> dict[str, Any] | None:
        data = _get(ns, f"{prom}/api/v1/alerts")
        return next((a for a in data["data"]["alerts"] if a["labels"].get("alertname") == name
                     and a["labels"].get("instance") == instance and a["state"] == "firing"), None)

    @staticmethod
    def _am_alert(ns: str, am: str, name: str, instance: str) -> dict[str, Any] | None:
        data = _get(ns, f"{am}/api/v2/alerts?filter=alertname%3D%22{name}%22")
        return next((a for a in data if a["labels"].get("instance") == instance), None)

    def _delivered(self, name: str, instance: str) -> dict[str, Any] | None:
        try:
            lines = (self.dir / "notifications.jsonl").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            note = json.loads(line)
            if any(a.get("alertname") == name and a.get("instance") == instance for a in note["alerts"]):
                return note
        return None

    def down(self) -> None:
        self.stop_all()
        if (self.run_dir / "state.json").exists():
            from x0lab.testbed.bed import Testbed

            Testbed.open(self.run_dir).down()


class _Sink(http.server.BaseHTTPRequestHandler):
    out: pathlib.Path

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= 1 << 20:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        try:
            doc = json.loads(body)
        except ValueError:
            self.send_error(400)
            return
        with open(self.out, "a") as f:
            f.write(json.dumps({"received": time.time(), "status": doc.get("status"),
                                "alerts": [a.get("labels", {}) for a in doc.get("alerts", [])]}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def sink(port: int, out: pathlib.Path) -> None:
    """Alertmanager webhook receiver: one JSON line per notification."""
    import socket

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6

    _Sink.out = out
    Server(("::1", port), _Sink).serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m x0lab.fleet.demo", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="mesh + Prometheus + Alertmanager, inject a fault, show the alert")
    u.add_argument("--run-dir", type=pathlib.Path, default=DEFAULT_RUN_DIR)
    u.add_argument("--nodes", type=int, default=5)
    u.add_argument("--fault", default="kill:3", help="KIND:NODE of `x0node testbed fault` (default kill:3)")
    u.add_argument("--shots", type=pathlib.Path, help="save PNG pictures of the alert and dashboard panels here")
    d = sub.add_parser("down", help="stop everything the demo started")
    d.add_argument("--run-dir", type=pathlib.Path, default=DEFAULT_RUN_DIR)
    s = sub.add_parser("sink", help=argparse.SUPPRESS)
    s.add_argument("--port", type=int, default=SINK_PORT)
    s.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "sink":
        sink(args.port, args.out)
        return 0
    demo = Demo(args.run_dir.resolve())
    if args.cmd == "down":
        demo.down()
        print("fleet demo stopped")
        return 0
    kind, _, node = args.fault.partition(":")
    if not 3 <= args.nodes <= 16 or not node.isdigit() or not 2 <= int(node) <= args.nodes:
        print("--nodes 3..16 and --fault KIND:NODE with NODE 2..N (node 1 hosts Prometheus)", file=sys.stderr)
        return 2
    try:
        result = demo.up(args.nodes, (kind, int(node)), args.shots)
    except (DemoError, OSError, subprocess.CalledProcessError) as exc:
        print(f"fleet demo failed: {exc}\n(logs in {demo.dir}; `python -m x0lab.fleet.demo down` cleans up)",
              file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    ns = demo.state["ns"]
    print(f"\nPrometheus: ip netns exec {ns} curl -sg 'http://[::1]:{PROM_PORT}/api/v1/alerts'")
    print(f"Alertmanager: ip netns exec {ns} curl -sg 'http://[::1]:{AM_PORT}/api/v2/alerts'")
    if result.get("prometheus_url"):
        print(f"Browser: {result['prometheus_url']} (forwarded from the namespace while the demo runs)")
    print("Stop it all: make fleet-demo-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
