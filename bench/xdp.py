"""Benchmark of the XDP/tracepoint telemetry programs.

1. ns per run from the kernel: xdp_mac_stats (and an empty XDP_PASS program as the floor) through
   BPF_PROG_TEST_RUN with a large repeat count; the tracepoint programs through single test runs
   timed by the kernel's BPF stats (raw tracepoints cannot be repeated in one call).
2. packets/s received on a veth pair with and without xdp_mac_stats attached (native mode), and with
   an empty XDP program (veth's native XDP path itself costs: it moves frames through a NAPI ring),
   same run, alternating rounds; a small C sender (AF_PACKET, qdisc bypass) blasts 64-byte frames for a fixed
   time from one namespace, the rate is the receiver's rx_packets delta.
Prints a table, then one JSON line (last line) with bench="xdp", mac_stats_ns_per_pkt, pps_without,
pps_with, pps_ratio. Needs root; bounded in time (~20 s); cleans up its namespaces.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.netns import Namespaces, run  # noqa: E402
from x0node.telemetry import libbpf, profiler  # noqa: E402
from x0node.telemetry.loader import BpfObject  # noqa: E402

BPF_DIR = ROOT / "build" / "bpf"
REPEAT = 2_000_000
ROUNDS_TEST_RUN = 5
TP_RUNS = 20_000
PPS_SECONDS = 2.0
PPS_ROUNDS = 3
FRAME = b"\xff" * 6 + bytes.fromhex("02000000aa01") + b"\x88\xb5" + bytes(50)

PASS_SRC = """
#define SEC(n) __attribute__((section(n), used))
struct xdp_md;
SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return 2; }
char LICENSE[] SEC("license") = "GPL";
"""

SENDER_SRC = r"""
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    double secs = atof(argv[2]);
    int s = socket(AF_PACKET, SOCK_RAW, 0);
    int one = 1;
    setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET; sll.sll_ifindex = if_nametoindex(argv[1]); sll.sll_halen = 6;
    if (bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) { perror("bind"); return 1; }
    unsigned char f[64] = {0xff,0xff,0xff,0xff,0xff,0xff, 0x02,0,0,0,0xaa,0x01, 0x88,0xb5};
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long sent = 0;
    for (;;) {
        for (int i = 0; i < 256; i++) { f[11] = (unsigned char)(i & 7); if (send(s, f, sizeof(f), 0) > 0) sent++; }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs) break;
    }
    printf("%lu\n", sent);
    return 0;
}
"""


def test_run_ns(prog_fd: int) -> float:
    runs = [libbpf.test_run(prog_fd, data=FRAME, repeat=REPEAT).duration_ns for _ in range(ROUNDS_TEST_RUN)]
    return float(statistics.median(runs))


def tracepoint_ns(obj: BpfObject, name: str, ctx: bytes) -> float | None:
    fd = obj.prog_fds[name]
    with profiler.StatsSession():
        before = [p for p in profiler.read_all(frozenset({name})) if p.run_cnt >= 0]
        for _ in range(TP_RUNS):
            libbpf.test_run(fd, ctx=ctx)
        after = profiler.read_all(frozenset({name}))
    d = [x for x in profiler.deltas(before, after) if x.run_cnt >= TP_RUNS]
    return d[0].ns_per_run if d else None


TCP_TRAFFIC = r"""
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
port = srv.getsockname()[1]
for _ in range(20):
    c = socket.create_connection(("127.0.0.1", port)); a, _ = srv.accept()
    for _ in range(200):
        c.sendall(b"x" * 1000); a.recv(65536); a.sendall(b"y" * 10); c.recv(65536)
    c.close(); a.close()
"""


def tracepoints_live(ns: str) -> dict[str, float | None]:
    """ns/run of the TCP programs on real sockets (TCP echo inside `ns`), from kernel stats."""
    from x0node.telemetry.loader import netns_inode
    from x0node.telemetry.probes import TCP_OBJECTS, Probes

    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None, tcp_netns_ino=netns_inode(f"/run/netns/{ns}"))
    try:
        probes.load_tcp()
        names = frozenset(TCP_OBJECTS)
        with profiler.StatsSession():
            before = profiler.read_all(names)
            run(sys.executable, "-c", TCP_TRAFFIC, ns=ns, timeout=60)
            after = profiler.read_all(names)
    finally:
        probes.close()
    return {d.name: d.ns_per_run for d in profiler.deltas(before, after)}


def rx_packets(ns: str, ifname: str) -> int:
    out = run("cat", f"/sys/class/net/{ifname}/statistics/rx_packets", ns=ns).stdout
    return int(out.strip())


def pps_round(a: str, b: str, sender: str) -> float:
    before = rx_packets(b, "x0tb")
    t0 = time.monotonic()
    run(sender, "x0ta", str(PPS_SECONDS), ns=a, timeout=PPS_SECONDS + 20)
    dt = time.monotonic() - t0
    time.sleep(0.1)
    return (rx_packets(b, "x0tb") - before) / dt


def main() -> int:
    if os.geteuid() != 0:
        print("bench/xdp.py needs root", file=sys.stderr)
        return 1
    rows: list[tuple[str, str]] = []
    tmp = tempfile.mkdtemp(prefix="x0bench-xdp-")
    with open(os.path.join(tmp, "pass.bpf.c"), "w") as fh:
        fh.write(PASS_SRC)
    subprocess.run(["clang", "-O2", "-target", "bpf", "-c", "pass.bpf.c", "-o", "pass.bpf.o"], cwd=tmp, check=True)
    with open(os.path.join(tmp, "sender.c"), "w") as fh:
        fh.write(SENDER_SRC)
    subprocess.run(["clang", "-O2", "sender.c", "-o", "sender"], cwd=tmp, check=True)
    sender = os.path.join(tmp, "sender")

    mac = BpfObject(str(BPF_DIR / "xdp_mac_stats.bpf.o"), pin_root=None)
    mac.set_global(".rodata", os.urandom(16))
    mac.load()
    floor = BpfObject(os.path.join(tmp, "pass.bpf.o"), pin_root=None)
    floor.load()
    result: dict[str, object] = {"bench": "xdp"}
    try:
        ns_mac = test_run_ns(mac.prog_fds["xdp_mac_stats"])
        ns_pass = test_run_ns(floor.prog_fds["xdp_pass"])
        rows += [("xdp_mac_stats ns/pkt (test_run, median)", f"{ns_mac:.1f}"),
                 ("empty XDP_PASS ns/pkt (test_run floor)", f"{ns_pass:.1f}")]
        result["mac_stats_ns_per_pkt"] = ns_mac
        result["xdp_pass_ns_per_pkt"] = ns_pass
        for name, ctx in (("tcp_states", struct.pack("<Qqq", 0, 1, 4)), ("tcp_rtt", struct.pack("<QQ", 0, 0)),
                          ("tcp_retrans", struct.pack("<QQq", 0, 0, 0))):
            obj = BpfObject(str(BPF_DIR / f"{name}.bpf.o"), pin_root=None)
            try:
                obj.load()
                v = tracepoint_ns(obj, name, ctx)
            finally:
                obj.close()
            rows.append((f"{name} ns/run (bpf stats, NULL socket path)", f"{v:.1f}" if v else "n/a"))
            result[f"{name}_ns_per_run"] = v

        nss = Namespaces("x0tbench")
        try:
            a, b = nss.add(), nss.add()
            for n in (a, b):
                run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", ns=n)
            nss.veth(a, b, "x0ta", "x0tb")
            for name, v in sorted(tracepoints_live(a).items()):
                rows.append((f"{name} ns/run on real sockets (kernel stats, live)", f"{v:.1f}" if v else "n/a"))
                result[f"{name}_live_ns_per_run"] = v
            without, with_, with_pass = [], [], []
            live: dict[str, list[float]] = {}
            for _ in range(PPS_ROUNDS):
                without.append(pps_round(a, b, sender))
                for obj, prog, out in ((mac, "xdp_mac_stats", with_), (floor, "xdp_pass", with_pass)):
                    att = obj.attach_xdp(prog, "x0tb", mode="native", netns=b)
                    try:
                        with profiler.StatsSession():
                            before = profiler.read_all(frozenset({prog}))
                            out.append(pps_round(a, b, sender))
                            after = profiler.read_all(frozenset({prog}))
                        for d in profiler.deltas(before, after):
                            if d.ns_per_run is not None and d.run_cnt > 0:
                                live.setdefault(prog, []).append(d.ns_per_run)
                    finally:
                        obj.detach_xdp(att)
            pps_without, pps_with = statistics.median(without), statistics.median(with_)
            pps_pass = statistics.median(with_pass)
        finally:
            nss.cleanup()
        rows += [
            ("veth rx pps without XDP", f"{pps_without:,.0f}"),
            ("veth rx pps with empty XDP_PASS (native)", f"{pps_pass:,.0f}"),
            ("veth rx pps with xdp_mac_stats (native)", f"{pps_with:,.0f}"),
            ("ratio with/without", f"{pps_with / pps_without:.3f}"),
            ("ratio with/empty XDP program (program cost only)", f"{pps_with / pps_pass:.3f}"),
        ]
        for prog, vals in sorted(live.items()):
            rows.append((f"{prog} ns/run on the veth (kernel stats, live)", f"{statistics.median(vals):.1f}"))
            result[f"{prog}_live_ns_per_run"] = statistics.median(vals)
        result.update(pps_without=pps_without, pps_with=pps_with, pps_ratio=pps_with / pps_without,
                      pps_with_empty_xdp=pps_pass, pps_ratio_vs_empty_xdp=pps_with / pps_pass)
    finally:
        mac.close()
        floor.close()
        subprocess.run(["rm", "-rf", tmp], check=False)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
