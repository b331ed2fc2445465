"""Overlay benchmark: end-to-end encryption vs clear vs yggdrasil 0.4.7 on one 3-hop path, and NAT punching.

In one run:
- a line of four namespaces n1-n2-n3-n4 running x0node (routes from the daemon, as deployed), once
  without and once with the [overlay] section (default settings: ChaCha20-Poly1305, TUN MTU 60000);
- TCP throughput n1 -> n4 between the mesh addresses (iperf3, --seconds each, --reps alternating
  runs, median), CPU seconds per Gbit of every process involved (the daemons or yggdrasil, both
  iperf3 ends; kernel forwarding on n2/n3 is the same in all cases and not counted), and the median
  RTT of 50 pings (added latency = encrypted - clear);
- the peer on the same path: Debian's yggdrasil in n1 and n4, n1 peering with n4's mesh address
  across n2 and n3 (its most favourable set-up: no yggdrasil hop in between), iperf3 between the two
  yggdrasil addresses;
- NAT traversal (lab/x0lab/testbed/nat.py): --punch-trials pairs of sites behind port-preserving NATs,
  the punch setup time each reports (INTRO received -> first authenticated datagram on the direct
  path) and the share punched directly; one pair with a symmetric NAT, which must fall back to the
  relay and carry a ping.

- the same clear/encrypted pair again with every veth of the 3 hops shaped (tbf, both directions) to a
  router's real link rate (--shape, default 1gbit and 300mbit): an additional row, the unshaped row
  stays the headline;
- with --guest, the same path inside one booted x86_64 router image (bench/overlay_guest.py: clear,
  kernel ESP and the userspace path, the datapath the daemon picks; TCG, so only ratios mean anything).

Needs root, iperf3 and yggdrasil. Prints a table and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lab"))

from x0lab.testbed import measure  # noqa: E402
from x0lab.testbed.bed import Testbed  # noqa: E402
from x0lab.testbed.nat import NatSites  # noqa: E402

YGG_PORT = 16720
IPERF_PORT = 5201


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def iperf(bed: Testbed, src_ns: str, dst_ns: str, dst: str, seconds: float, bind: str | None) -> dict:
    """One iperf3 TCP run; Mbit/s and CPU seconds per Gbit of every process in the path's namespaces."""
    srv = subprocess.Popen(["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1", "-B", dst, "-p", str(IPERF_PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        watched = [p for k in bed.nodes for p in ns_pids(bed.nodes[k].ns)]
        cpu0 = cpu_seconds(watched)
        cmd = ["ip", "netns", "exec", src_ns, "iperf3", "-c", dst, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
        if bind:
            cmd += ["-B", bind]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        cpu1 = cpu_seconds(watched + [srv.pid])
        data = json.loads(out.stdout)
        end = data["end"]
        bits = end["sum_received"]["bytes"] * 8
        mbps = end["sum_received"]["bits_per_second"] / 1e6
        cpu = cpu1 - cpu0
        return {"mbps": mbps, "cpu_s_per_gbit": cpu / (bits / 1e9) if bits else None}
    finally:
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def median_rtt_ms(bed: Testbed, src: int, dst: str, count: int = 50) -> float:
    out = bed.exec(src, "ping", "-c", str(count), "-i", "0.05", dst, check=False, timeout=60)
    times = [float(m) for m in re.findall(r"time=([0-9.]+) ms", out)]
    return statistics.median(times) if times else float("nan")


def start_yggdrasil(bed: Testbed, workdir: pathlib.Path) -> tuple[list[subprocess.Popen], str]:
    """yggdrasil in n1 and n4 (n1 peers with n4's mesh address); returns (processes, n4's ygg address)."""
    procs = []
    addr4 = ""
    for k, peers in ((4, []), (1, [f"tcp://[{bed.nodes[4].mesh_addr}]:{YGG_PORT}"])):
        conf = json.loads(subprocess.run(["yggdrasil", "-genconf", "-json"], capture_output=True, text=True,
                                         check=True).stdout)
        sock = workdir / f"ygg{k}.sock"
        conf.update(Peers=peers, Listen=[f"tcp://[{bed.nodes[k].mesh_addr}]:{YGG_PORT}"] if k == 4 else [],
                    MulticastInterfaces=[], AdminListen=f"unix://{sock}", IfName=f"ygg{k}")
        path = workdir / f"ygg{k}.conf"
        path.write_text(json.dumps(conf))
        log = open(workdir / f"ygg{k}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(["ip", "netns", "exec", bed.nodes[k].ns, "yggdrasil", "-useconffile", str(path)],
                                      stdout=log, stderr=log))
        log.close()
        if k == 4:
            deadline = time.monotonic() + 20
            while not addr4 and time.monotonic() < deadline:
                time.sleep(0.2)
                m = re.search(r"Your IPv6 address is (\S+)", (workdir / "ygg4.log").read_text())
                addr4 = m.group(1) if m else ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if " 0% packet loss" in bed.exec(1, "ping", "-c", "1", "-W", "1", addr4, check=False):
            break
    return procs, addr4


def path_bench(args, workdir: pathlib.Path) -> dict:
    res: dict[str, list[dict]] = {"clear": [], "encrypted": [], "yggdrasil": []}
    rtt: dict[str, float] = {}
    beds = {}
    try:
        for name, sections in (("clear", {}), ("encrypted", {"overlay": {}})):
            bed = Testbed.create(workdir / name, "line:4", "x0node", sections=sections)
            beds[name] = bed
            bed.start_all()
            if measure.wait_converged(bed, 60) is None:
                raise RuntimeError(f"{name} mesh did not converge")
            if not measure.wait_ping(bed, 1, bed.nodes[4].mesh_addr, 30):
                raise RuntimeError(f"{name}: no ping n1 -> n4")
            rtt[name] = median_rtt_ms(bed, 1, bed.nodes[4].mesh_addr)
        yprocs, yaddr = start_yggdrasil(beds["clear"], workdir)
        try:
            rtt["yggdrasil"] = median_rtt_ms(beds["clear"], 1, yaddr)
            for rep in range(args.reps + 1):  # the first round warms up (yggdrasil builds its path) and is dropped
                for name in ("clear", "encrypted", "yggdrasil"):
                    bed = beds["clear" if name == "yggdrasil" else name]
                    dst = yaddr if name == "yggdrasil" else bed.nodes[4].mesh_addr
                    bind = None if name == "yggdrasil" else bed.nodes[1].mesh_addr
                    r = iperf(bed, bed.nodes[1].ns, bed.nodes[4].ns, dst, args.seconds if rep else 2.0, bind)
                    if rep:
                        res[name].append(r)
                    print(f"  {name:10} {r['mbps']:9.1f} Mbit/s  {r['cpu_s_per_gbit'] or 0:6.2f} CPU-s/Gbit"
                          f"{'' if rep else '  (warm-up)'}", flush=True)
        finally:
            for p in yprocs:
                p.terminate()
                p.wait(10)
        shaped = shaped_bench(args, beds)
    finally:
        for bed in beds.values():
            bed.down()
    med = {k: {f: statistics.median(x[f] for x in v if x[f] is not None) for f in ("mbps", "cpu_s_per_gbit")}
           for k, v in res.items()}
    return {"med": med, "rtt": rtt, "runs": res, "shaped": shaped}


def shape(bed: Testbed, rate: str | None) -> None:
    """tbf at `rate` on both ends of every link (None: remove it)."""
    for a, b in bed.topology.links:
        for x, y in ((a, b), (b, a)):
            node = bed.nodes[x]
            dev = node.ifaces[y]
            if rate is None:
                bed.exec(x, "tc", "qdisc", "del", "dev", dev, "root", check=False)
            else:
                bits = int(float(re.sub(r"[a-z]+$", "", rate)) * {"gbit": 1e9, "mbit": 1e6}[re.sub(r"^[0-9.]+", "", rate)])
                burst = max(64 * 1024, bits // 8 // 500)  # 2 ms at the rate, at least a 64 kB GSO segment
                bed.exec(x, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", str(burst),
                         "latency", "20ms")


def shaped_bench(args, beds: dict) -> dict:
    out = {}
    for rate in [r for r in args.shape.split(",") if r]:
        runs: dict[str, list[float]] = {"clear": [], "encrypted": []}
        try:
            for bed in beds.values():
                shape(bed, rate)
            for _ in range(args.reps):
                for name in ("clear", "encrypted"):
                    bed = beds[name]
                    r = iperf(bed, bed.nodes[1].ns, bed.nodes[4].ns, bed.nodes[4].mesh_addr, args.seconds,
                              bed.nodes[1].mesh_addr)
                    runs[name].append(r["mbps"])
                    print(f"  {name:10} {r['mbps']:9.1f} Mbit/s  (links shaped to {rate})", flush=True)
        finally:
            for bed in beds.values():
                shape(bed, None)
        c, e = statistics.median(runs["clear"]), statistics.median(runs["encrypted"])
        out[rate] = {"clear_mbps": round(c, 1), "encrypted_mbps": round(e, 1), "encrypted_vs_clear": round(e / c, 3)}
    return out


def punch_bench(args, workdir: pathlib.Path) -> dict:
    setups, direct = [], 0
    for i in range(args.punch_trials):
        s = NatSites(workdir / f"nat{i}")
        try:
            s.up()
            got = s.wait_link("a", "b", 60)
            if got is not None and got[0] == "direct":
                direct += 1
                if got[1] is not None:
                    setups.append(got[1])
            print(f"  punch trial {i + 1}: {got}", flush=True)
        finally:
            s.down()
    relay_ok = False
    s = NatSites(workdir / "natsym", nat_a="symmetric")
    try:
        s.up()
        got = s.wait_link("a", "b", 60)
        if got is not None and got[0] == "relay":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not relay_ok:
                relay_ok = " 0% packet loss" in s.exec("a", "ping", "-c", "1", "-W", "1", s.nodes["b"].mesh_addr,
                                                       check=False)
        print(f"  symmetric NAT: {got}, ping over the relay {'ok' if relay_ok else 'failed'}", flush=True)
    finally:
        s.down()
    return {"setups": setups, "success": direct / args.punch_trials if args.punch_trials else None,
            "relay_ok": relay_ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="iperf3 duration per run")
    ap.add_argument("--reps", type=int, default=3, help="alternating runs per variant (median)")
    ap.add_argument("--punch-trials", type=int, default=3)
    ap.add_argument("--shape", default="1gbit,300mbit", help="link rates for the shaped rows (tbf), comma-separated; "
                    "empty: none")
    ap.add_argument("--guest", action="store_true", help="also measure inside a booted x86_64 router image (QEMU)")
    args = ap.parse_args()
    for tool in ("iperf3", "yggdrasil"):
        if shutil.which(tool) is None:
            print(f"{tool} not installed (make deps)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="x0ovb") as tmp:
        work = pathlib.Path(tmp)
        print("path n1 -> n4 (3 hops): TCP throughput, CPU per Gbit")
        p = path_bench(args, work)
        print("NAT traversal")
        n = punch_bench(args, work)
    med, rtt = p["med"], p["rtt"]
    print()
    print(f"{'variant':12} {'Mbit/s':>10} {'CPU-s/Gbit':>11} {'RTT ms':>8}")
    for k in ("clear", "encrypted", "yggdrasil"):
        print(f"{k:12} {med[k]['mbps']:10.1f} {med[k]['cpu_s_per_gbit']:11.2f} {rtt[k]:8.3f}")
    enc, clear, ygg = med["encrypted"]["mbps"], med["clear"]["mbps"], med["yggdrasil"]["mbps"]
    print(f"encrypted/clear {enc / clear:.3f} (goal >= 0.5), encrypted/yggdrasil {enc / ygg:.3f} (goal >= 1)")
    setup = statistics.median(n["setups"]) if n["setups"] else None
    print(f"punch: success {n['success']}, setup median {setup} s (goal <= 2 s); symmetric NAT relay "
          f"{'works' if n['relay_ok'] else 'FAILED'}")
    out = {
        "bench": "overlay",
        "encrypted_mbps": round(enc, 1),
        "clear_mbps": round(clear, 1),
        "yggdrasil_mbps": round(ygg, 1),
        "encrypted_vs_clear": round(enc / clear, 3),
        "encrypted_vs_yggdrasil": round(enc / ygg, 3),
        "encrypted_cpu_s_per_gbit": round(med["encrypted"]["cpu_s_per_gbit"], 2),
        "clear_cpu_s_per_gbit": round(med["clear"]["cpu_s_per_gbit"], 2),
        "yggdrasil_cpu_s_per_gbit": round(med["yggdrasil"]["cpu_s_per_gbit"], 2),
        "added_latency_ms": round(rtt["encrypted"] - rtt["clear"], 3),
        "yggdrasil_added_latency_ms": round(rtt["yggdrasil"] - rtt["clear"], 3),
        "punch_setup_s": setup,
        "punch_success": n["success"],
        "relay_fallback_ok": n["relay_ok"],
        "shaped": p["shaped"],
    }
    for rate, row in p["shaped"].items():
        print(f"links shaped to {rate}: clear {row['clear_mbps']} Mbit/s, encrypted {row['encrypted_mbps']} Mbit/s, "
              f"ratio {row['encrypted_vs_clear']} (the unshaped ratio above is the headline)")
    if args.guest:
        sys.path.insert(0, str(ROOT / "bench"))
        import overlay_guest

        g = overlay_guest.run_in_vm("x86_64", args.seconds)
        print(f"in the x86_64 image (TCG, kernel {g.get('kernel')}): clear {g.get('clear_mbps')}, kernel ESP "
              f"{g.get('esp_mbps')}, userspace {g.get('userspace_mbps')} Mbit/s; esp/clear {g.get('esp_vs_clear')}")
        out["guest"] = {k: g.get(k) for k in ("kernel", "cipher", "esp_available", "clear_mbps", "esp_mbps",
                                               "userspace_mbps", "esp_vs_clear", "userspace_vs_clear", "esp_datapath")}
        out["guest_esp_vs_clear"] = g.get("esp_vs_clear")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
