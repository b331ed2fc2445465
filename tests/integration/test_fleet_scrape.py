"""A live scrape of real daemons in namespaces (a line of three, web UI, the healing loop and updates on):
every seed metric family is served with the seed's type and labels, every node is in each router's
node families, `x0node fleet targets` turns a router's view into file-SD targets, and every metric the
dashboards and rules use is one the node exports (`x0node fleet check --metrics`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from x0lab.testbed import measure
from x0lab.testbed.bed import Testbed

CONVERGE_TIMEOUT_S = 60.0
HEALING = {"mode": "observe", "interval_s": 0.5, "guard_after_boot_s": 0, "guard_after_start_s": 0}
# name -> (type, label names of its samples besides le/quantile); None: family declared, no sample yet
SEED_FAMILIES = {
    "http_requests": ("counter", {"method", "endpoint", "status"}),
    "http_request_duration_seconds": ("histogram", {"method", "endpoint"}),
    "mesh_peers_count": ("gauge", set()),
    "mesh_latency_seconds": ("histogram", {"peer_id"}),
    "mape_k_cycle_duration_seconds": ("histogram", {"phase"}),
    "self_healing_events": ("counter", None),  # a sample once an action is verified (docs/healing.md)
    "self_healing_mttr_seconds": ("histogram", None),  # a sample once an incident closes
    "node_health_status": ("gauge", {"node_id"}),
    "node_uptime_seconds": ("gauge", {"node_id"}),
    "x0node_cert_auth_success": ("counter", set()),
    "x0node_cert_auth_failure": ("counter", None),  # no refusals in a healthy mesh
}


def _in_ns(bed: Testbed, k: int, *cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", bed.nodes[k].ns, *cmd], capture_output=True, text=True,
                          timeout=timeout)


def _scrape(bed: Testbed, k: int, url: str) -> str:
    out = _in_ns(bed, k, "curl", "-sS", "--max-time", "10", "-g", url)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _ota_section(work) -> dict:
    """[ota] with release keys made here and installs off (no slots in a namespace)."""
    from x0node.ota import bundle, keys

    keys.init(work / "keys")
    rel = work / "release.json"
    rel.write_text(json.dumps({"board": "x86_64", "compat": bundle.compat_of("x86_64"), "version": "1.0", "serial": 1}))
    return {"installer": "none", "release_file": str(rel), "keys_file": str(work / "keys" / keys.RELEASE_KEYS_FILE),
            "keyring": str(work / "keys" / "ca.cert.pem"), "auto_fetch": False}


def test_live_node_serves_every_seed_family_and_the_fleet_tools_agree(tmp_path):
    bed = Testbed.create(tmp_path / "bed", "line:3", "x0node", web=True,
                         sections={"healing": HEALING, "state": {}, "ota": _ota_section(tmp_path)})
    try:
        bed.start_all()
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
        middle = bed.nodes[2]
        url = f"http://[{middle.mesh_addr}]:8080/metrics"
        ids = {bed.nodes[k].node_id for k in bed.nodes}
        # from node 1: across one hop of the mesh, as Prometheus on another router would
        deadline = time.monotonic() + 30.0
        while True:
            text = _scrape(bed, 1, url)
            families = {f.name: f for f in text_string_to_metric_families(text)}
            lat = families.get("mesh_latency_seconds")
            peers = {s.labels["peer_id"] for s in lat.samples if s.name.endswith("_count") and s.value > 0} if lat else set()
            cycles = families.get("mape_k_cycle_duration_seconds")
            if (peers == ids - {middle.node_id} and cycles is not None and cycles.samples
                    and "http_requests" in families and families["http_requests"].samples) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for name, (kind, labels) in SEED_FAMILIES.items():
            assert name in families, name
            fam = families[name]
            assert fam.type == kind, (name, fam.type)
            if labels is not None:
                assert fam.samples, name
                for s in fam.samples:
                    assert set(s.labels) - {"le"} == labels, (name, s.labels)
        assert peers == ids - {middle.node_id}
        assert {s.labels["phase"] for s in families["mape_k_cycle_duration_seconds"].samples} >= {"monitor", "analyze", "cycle"}
        for name in ("node_health_status", "node_uptime_seconds"):
            assert {s.labels["node_id"] for s in families[name].samples} == ids, name
        assert all(s.value == 1.0 for s in families["node_health_status"].samples)
        own_uptime = next(s.value for s in families["node_uptime_seconds"].samples if s.labels["node_id"] == middle.node_id)
        assert own_uptime > 0
        assert next(iter(families["x0node_cert_auth_success"].samples)).value > 0

        # x0node fleet targets from the middle router's view: every node, at its mesh address
        out_file = tmp_path / "targets" / "x0node.json"
        r = _in_ns(bed, 1, sys.executable, "-m", "x0node", "fleet", "targets", "--from", url, "--out", str(out_file))
        assert r.returncode == 0, r.stderr
        groups = json.loads(out_file.read_text())
        assert {g["labels"]["node_id"] for g in groups} == ids
        assert sorted(t for g in groups for t in g["targets"]) == sorted(
            f"[{bed.nodes[k].mesh_addr}]:8080" for k in bed.nodes)

        # every metric the dashboards and alert rules read is served (or a recording rule)
        saved = tmp_path / "scrape.txt"
        saved.write_text(text)
        r = subprocess.run([sys.executable, "-m", "x0node", "fleet", "check", "--metrics", str(saved)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        bed.down()
