"""OTA bench: distributing a bundle of the real size over a 10-node namespace mesh of real x0node
daemons against the star baseline, bytes re-sent after an interrupted transfer, and (with a built
image) install to marked good and power cuts in QEMU.

Mesh (`random:10`, every link shaped to LINK_RATE by a tbf bottleneck on both ends, so links and not
the two loaded cores are the limit, as on radio links): the bundle is published on a vendor server
that only node 1 reaches (its namespace's loopback, its `[ota] uplink`); every node runs the state and
OTA services with the deployed code path (installer "none": these nodes have no slots). `mesh_s` is
from node 1 starting its download until every node holds the verified bundle. `uplink_bytes_ratio` is
the vendor server's bytes sent over the bundle's size.

Star baseline, same mesh, same links, same run: the gateway (node 1) downloads the bundle once, then
every other node downloads it from node 1's OTA server at once (chunk by chunk, hashes checked, as a
node would), routed over the mesh. `star_s` is node 1's uplink download (`uplink_s`, timed in the mesh
part) plus `star_serve_s`, until the last node is done. Both use the same per-node OTA send share
(RATE_KBIT). `mesh_after_uplink_s` is how long after node 1 the last mesh node was done (the mesh
relays chunks while node 1 is still downloading).

Resume: the node farthest from node 1 starts over with nothing, is killed (SIGKILL) once it holds a
quarter of the chunks, and is started again; `resume_resent_chunks` is the chunks its peers served it,
less the bundle's chunk count.

QEMU (builds the x86_64 image, or reuses it; releases derived from it, see tests/image/ota_vm.py), one
VM with real RAUC: `install_to_good_s` from the install request on the web API to the new slot marked
good after its health gate; `powercut_good` of `powercut_total` power cuts (SIGKILL of QEMU) at random
points of an install or rollback and of the reboot that follows, after which the VM booted a slot with
a ready x0node and /data intact; then the bad build (web UI on ::1 only) installed: `bad_rolled_back`
when the health gate failed it and the VM was back on its previous slot with no human, in
`bad_rollback_s` (null with --no-bad-build). With --no-qemu these are null.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "lab"))

from tests.integration.ota_mesh import (  # noqa: E402
    UplinkServer,
    make_bundle,
    phases,
    status,
    wait_ota,
    write_release,
)
from x0lab.testbed.bed import Testbed  # noqa: E402
from x0node.ota import bundle as ota_bundle  # noqa: E402
from x0node.ota import keys, rollout  # noqa: E402
from x0node.ota import manifest as mf  # noqa: E402
from x0node.proto.protocol import OTA_TCP_PORT  # noqa: E402

TOPOLOGY = "random:10:3"
LINK_RATE = "80mbit"
RATE_KBIT = 60000
"""Each node's OTA send share: 75 % of a link, the rest for routing and users."""
DEFAULT_BUNDLE_BYTES = 96 * 1024 * 1024
"""The x86_64 root slot's size (docs/image.md) when no image is built here."""
TIMEOUT_S = 1200.0
GOALS = {"uplink_bytes_ratio": 1.1, "resume_resent_chunks": 1, "powercut_good_of_total": 1.0}


def real_slot_image() -> pathlib.Path | None:
    out = pathlib.Path(__file__).resolve().parent.parent / "out" / "x86_64"
    found = sorted(out.glob("x0-x86_64-*.root.sqfs"))
    return found[-1] if found else None


def star_client(url_base: str, manifest_path: str) -> None:
    """Run inside a node's namespace: fetch every chunk from the gateway, check it, print the seconds."""
    import aiohttp

    m = mf.parse(pathlib.Path(manifest_path).read_bytes()).manifest

    async def run() -> float:
        t0 = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            for i in range(len(m.chunks)):
                why = ""
                for _attempt in range(600):  # the gateway serves 8 at once; the others retry
                    async with s.get(f"{url_base}/ota/v1/{m.id}/chunk/{i}", headers={"X-Node": "star"}) as r:
                        data = await r.read()
                        if r.status == 200 and m.chunk_ok(i, data):
                            break
                        why = f"HTTP {r.status}, {len(data)} bytes"
                    await asyncio.sleep(1.0)
                else:
                    raise SystemExit(f"chunk {i} not fetched: {why}")
        return time.monotonic() - t0

    print(json.dumps({"seconds": asyncio.run(run())}), flush=True)


def hops_from_1(bed: Testbed) -> dict[int, int]:
    d = rollout.hops_from("1", [str(k) for k in bed.nodes], {(str(a), str(b)) for a, b in bed.state["links"]})
    return {int(k): v for k, v in d.items()}


def wait_all(bed: Testbed, phase: str, timeout_s: float, nodes: list[int] | None = None,
             first: dict[int, float] | None = None) -> float | None:
    """When every node (of `nodes`) is in `phase`; `first` collects when each node was first seen in it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        now = time.monotonic()
        ph = phases(bed, nodes)
        if first is not None:
            for k, (p, _) in ph.items():
                if p == phase:
                    first.setdefault(k, now)
        if all(p == phase for p, _ in ph.values()):
            return now
        time.sleep(0.2)
    return None


def mesh_part(work: pathlib.Path) -> dict:
    kd = work / "keys"
    keys.init(kd)
    rel = write_release(work / "release.json", "1.0", 100)
    up_dir = work / "uplink"
    up_dir.mkdir()
    src = real_slot_image()
    if src is not None:
        b = ota_bundle.build(src, "x86_64", "1.1", 110, kd, up_dir / "x0-x86_64-1.1.raucb")
        signed = mf.sign(b, keys.holder_keys(kd)[:2])
        bundle_path = up_dir / "x0-x86_64-1.1.raucb"
        manifest_path = ota_bundle.manifest_path(bundle_path)
        ota_bundle.write_manifest(manifest_path, signed)
        m = b
        source = src.name
    else:
        bundle_path, manifest_path, m = make_bundle(up_dir, kd, DEFAULT_BUNDLE_BYTES, "1.1", 110)
        source = f"random {DEFAULT_BUNDLE_BYTES} bytes"
    print(f"bundle: {m.bundle_bytes} bytes, {len(m.chunks)} chunks ({source})", file=sys.stderr, flush=True)
    section = {"installer": "none", "release_file": str(rel), "keys_file": str(kd / keys.RELEASE_KEYS_FILE),
               "keyring": str(kd / "ca.cert.pem"), "rate_kbit": RATE_KBIT}
    bed = Testbed.create(work / "bed", TOPOLOGY, "x0node", sections={"state": {}, "ota": section},
                         node_sections={1: {"ota": {"uplink": "http://127.0.0.1:8088/latest.json"}}})
    uplink = None
    try:
        for a, b_ in bed.state["links"]:
            bed.fault("congest", a, b_, rate=LINK_RATE)
        uplink = UplinkServer(bed, 1, up_dir)
        uplink.publish(bundle_path, manifest_path)
        bed.start_all()
        wait_ota(bed)
        t0 = None
        deadline = time.monotonic() + 120
        while t0 is None and time.monotonic() < deadline:
            if phases(bed, [1])[1][0] == "downloading":
                t0 = time.monotonic()
            time.sleep(0.1)
        if t0 is None:
            raise RuntimeError("node 1 never started downloading from its uplink")
        first: dict[int, float] = {}
        t_end = wait_all(bed, "verified", TIMEOUT_S, first=first)
        if t_end is None:
            raise RuntimeError(f"mesh distribution did not finish: {phases(bed)}")
        mesh_s = t_end - t0
        uplink_s = first[1] - t0
        uplink_bytes = uplink.bytes_sent()
        print(f"mesh: {mesh_s:.1f} s ({uplink_s:.1f} s of them node 1's uplink download), uplink bytes "
              f"{uplink_bytes}", file=sys.stderr, flush=True)

        # star: every other node downloads the whole bundle from node 1 at once
        addr1 = bed.nodes[1].mesh_addr
        procs = []
        t0 = time.monotonic()
        for k in bed.nodes:
            if k == 1:
                continue
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", bed.nodes[k].ns, sys.executable, __file__, "--star-client",
                 f"http://[{addr1}]:{OTA_TCP_PORT}", str(manifest_path)], stdout=subprocess.PIPE, text=True))
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            if p.returncode != 0:
                raise RuntimeError(f"a star client failed: {out}")
        star_serve_s = time.monotonic() - t0
        star_s = uplink_s + star_serve_s  # the gateway fetches the bundle once, then serves every node
        print(f"star: {star_s:.1f} s ({star_serve_s:.1f} s serving after the gateway's download)",
              file=sys.stderr, flush=True)

        # resume: the farthest node starts over, is killed at a quarter, and started again
        dist = hops_from_1(bed)
        k = max(dist, key=lambda n: (dist[n], n))
        bed.stop(k)
        ota_dir = pathlib.Path(bed.nodes[k].data_dir) / "ota"
        for d in ota_dir.iterdir():
            if d.is_dir():
                subprocess.run(["rm", "-rf", str(d)], check=True)
        before = {j: (status(bed, j) or {}).get("served_to", {}).get(bed.nodes[k].node_id[:8], 0) for j in bed.nodes if j != k}
        bed.start(k)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            _p, have = phases(bed, [k])[k]
            if have >= len(m.chunks) // 4:
                break
            time.sleep(0.05)
        bed.stop(k, sig=signal.SIGKILL)
        time.sleep(1.0)
        bed.start(k)
        if wait_all(bed, "verified", TIMEOUT_S, [k]) is None:
            raise RuntimeError("the resumed node did not finish")
        after = {j: (status(bed, j) or {}).get("served_to", {}).get(bed.nodes[k].node_id[:8], 0) for j in bed.nodes if j != k}
        served = sum(after[j] - before[j] for j in after)
        resent = served - len(m.chunks)
        print(f"resume: node {k} ({dist[k]} hops) was served {served} chunks for {len(m.chunks)}", file=sys.stderr)
        return {"bundle_bytes": m.bundle_bytes, "chunks": len(m.chunks), "bundle_source": source,
                "mesh_s": round(mesh_s, 1), "star_s": round(star_s, 1), "uplink_s": round(uplink_s, 1),
                "mesh_after_uplink_s": round(mesh_s - uplink_s, 1), "star_serve_s": round(star_serve_s, 1),
                "uplink_bytes_ratio": round(uplink_bytes / m.bundle_bytes, 3),
                "resume_resent_chunks": resent, "resume_node_hops": dist[k], "topology": TOPOLOGY,
                "link_rate": LINK_RATE, "rate_kbit": RATE_KBIT}
    finally:
        if uplink is not None:
            uplink.stop()
        bed.down()


def qemu_part(args: argparse.Namespace) -> dict:
    try:
        from tests.image import ota_vm
    except ImportError:
        return {"install_to_good_s": None, "powercut_good": None, "powercut_total": None, "bad_rolled_back": None,
                "qemu_note": "tests/image/ota_vm.py not available"}
    return ota_vm.bench(args.powercuts, args.qemu_budget_s, args.reuse_images, not args.no_bad_build)


def main() -> int:
    if "--star-client" in sys.argv:
        i = sys.argv.index("--star-client")
        star_client(sys.argv[i + 1], sys.argv[i + 2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-qemu", action="store_true", help="skip the QEMU part")
    ap.add_argument("--no-mesh", action="store_true", help="skip the namespace mesh part (its figures are null)")
    ap.add_argument("--powercuts", type=int, default=20)
    ap.add_argument("--reuse-images", action="store_true",
                    help="use the x86_64 image already built from this tree (out/x86_64) instead of building it")
    ap.add_argument("--qemu-budget-s", type=float, default=None,
                    help="start no power cut after this many seconds of the QEMU part (powercut_total says how many ran)")
    ap.add_argument("--no-bad-build", action="store_true",
                    help="skip the bad build's rollback after the power cuts (bad_rolled_back is null)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/ota.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.no_mesh:
        res = dict.fromkeys(("bundle_bytes", "chunks", "mesh_s", "star_s", "uplink_s", "mesh_after_uplink_s",
                             "star_serve_s", "uplink_bytes_ratio", "resume_resent_chunks"))
    else:
        with tempfile.TemporaryDirectory(prefix="x0ota-bench-") as tmp:
            res = mesh_part(pathlib.Path(tmp))
    q = {"install_to_good_s": None, "powercut_good": None, "powercut_total": None, "bad_rolled_back": None}
    if not args.no_qemu:
        try:
            q = qemu_part(args)
        except Exception as exc:  # noqa: BLE001 - the mesh figures are still printed, with the reason
            q["qemu_error"] = f"{type(exc).__name__}: {exc}"[:600]
            print(f"QEMU part failed: {q['qemu_error']}", file=sys.stderr, flush=True)
    res.update(q)
    print(f"{'metric':<24} {'value':>12}  goal")
    print(f"{'bundle bytes':<24} {res['bundle_bytes']!s:>12}")
    print(f"{'mesh_s (10 nodes)':<24} {res['mesh_s']!s:>12}  < star_s")
    print(f"{'star_s (baseline)':<24} {res['star_s']!s:>12}")
    print(f"{'  uplink_s':<24} {res['uplink_s']!s:>12}  (in both)")
    print(f"{'  mesh after uplink':<24} {res['mesh_after_uplink_s']!s:>12}  < star serve")
    print(f"{'  star serve':<24} {res['star_serve_s']!s:>12}")
    print(f"{'uplink_bytes_ratio':<24} {res['uplink_bytes_ratio']!s:>12}  <= 1.1")
    print(f"{'resume_resent_chunks':<24} {res['resume_resent_chunks']!s:>12}  <= 1")
    print(f"{'install_to_good_s':<24} {res['install_to_good_s']!s:>12}")
    print(f"{'powercut good/total':<24} {str(res['powercut_good']) + '/' + str(res['powercut_total']):>12}  20/20")
    print(f"{'bad build rolled back':<24} {res['bad_rolled_back']!s:>12}  True (no human)")
    log = res.pop("powercut_log", None)
    if log:
        for e in log:
            print(f"  cut {e['cut']:>2}: {e['action']:<8} at {e['at_s']:>5} s during {e['during']:<8} "
                  f"slot {e.get('slot', '?')} data_ok={e.get('data_ok')} {e.get('error', '')[:60]}")
    print(json.dumps({"bench": "ota", **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
