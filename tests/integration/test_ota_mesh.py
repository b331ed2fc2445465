"""OTA on namespace meshes of real daemons: one uplink download, chunks relayed neighbour to neighbour,
a killed download resumed per chunk, and refusals with their reasons. Real RAUC bundles (rauc bundle),
real signatures, real HTTP between namespaces; installs are off (installer = "none": no slots here;
the QEMU tests in tests/image install with RAUC). Timings are measured by bench/ota.py, not asserted."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from tests.integration.coord_mesh import coord_bed, try_ask, wait_for
from tests.integration.ota_mesh import (
    UplinkServer,
    ask,
    make_bundle,
    ota_bed,
    phases,
    status,
    wait_ota,
    wait_phase,
    write_release,
)
from x0node.ota import keys

pytestmark = [pytest.mark.integration]
if shutil.which("rauc") is None:
    pytestmark.append(pytest.mark.skip(reason="rauc is not installed (make deps installs it)"))

BUNDLE_BYTES = 6 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    work = tmp_path_factory.mktemp("ota")
    kd = work / "keys"
    keys.init(kd)
    rel = write_release(work / "release.json", "1.0", 100)
    b, m, mani = make_bundle(work, kd, BUNDLE_BYTES, "1.1", 110)
    return work, kd, rel, b, m, mani


def test_one_uplink_download_relayed_and_resumed(release, tmp_path):
    work, kd, rel, b, m, mani = release
    up_dir = tmp_path / "uplink"
    up_dir.mkdir()
    shutil.copy(b, up_dir / b.name)
    bed = ota_bed(tmp_path / "bed", "line:4", kd, rel, {"rate_kbit": 16000},
                  node_ota={1: {"uplink": "http://127.0.0.1:8088/latest.json"}})
    uplink = None
    try:
        wait_ota(bed)
        uplink = UplinkServer(bed, 1, up_dir)
        uplink.publish(up_dir / b.name, m)
        # n4 is the far leaf: kill it once it holds some chunks but not all, then start it again
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            p, have = phases(bed, [4])[4]
            if 2 <= have < len(mani.chunks) - 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"n4 never was mid-download: {phases(bed)}")
        bed.stop(4, sig=signal.SIGKILL)
        time.sleep(1.0)
        bed.start(4)
        assert wait_phase(bed, "verified", 300) is not None, phases(bed)
        n = len(mani.chunks)
        # one download from outside the mesh, however many nodes
        assert uplink.bytes_sent() <= 1.1 * mani.bundle_bytes, (uplink.bytes_sent(), mani.bundle_bytes)
        st = {k: status(bed, k) for k in bed.nodes}
        for k in (2, 3, 4):
            assert st[k]["counters"]["uplink_bytes"] == 0
        # the restarted leaf: every chunk it got from any peer, less the bundle, is what was sent again
        short4 = bed.nodes[4].node_id[:8]
        served_to_4 = sum(st[k]["served_to"].get(short4, 0) for k in (1, 2, 3))
        assert n <= served_to_4 <= n + 1, (served_to_4, n)
        # every node holds the same verified bundle
        assert {st[k]["target"]["id"] for k in bed.nodes} == {mani.id}
    finally:
        if uplink is not None:
            uplink.stop()
        bed.down()


def test_refusals_with_reasons(release, tmp_path):
    work, kd, rel, b, m, mani = release
    bed = ota_bed(tmp_path / "bed", "line:2", kd, rel, {"auto_fetch": True})
    try:
        wait_ota(bed)

        def stage(bundle_path, manifest_path, **kw):
            return ask(bed, 1, {"op": "stage", "bundle": str(bundle_path), "manifest": str(manifest_path), **kw}, 120)

        # tampered: one byte of the bundle changed
        bad = tmp_path / "tampered.raucb"
        data = bytearray(b.read_bytes())
        data[len(data) // 2] ^= 0x01
        bad.write_bytes(bytes(data))
        out = stage(bad, m)
        assert not out["ok"] and out["error"].startswith("hash_mismatch"), out
        # tampered manifest: a field changed after signing
        doc = json.loads(m.read_text())
        doc["manifest"]["version"] = "9.9"
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(doc))
        out = stage(b, forged)
        assert not out["ok"] and out["error"].startswith("bad_signature"), out
        # too few signatures (one of two)
        b1, m1, _ = make_bundle(tmp_path, kd, 200_000, "1.2", 120, signers=1)
        out = stage(b1, m1)
        assert not out["ok"] and out["error"].startswith("bad_signature"), out
        # wrong board
        b2, m2, _ = make_bundle(tmp_path, kd, 200_000, "1.3", 130, board="arm64-virt")
        out = stage(b2, m2)
        assert not out["ok"] and out["error"].startswith("wrong_board"), out
        # downgrade without force; with force the operator may
        b3, m3, old = make_bundle(tmp_path, kd, 200_000, "0.9", 90)
        out = stage(b3, m3)
        assert not out["ok"] and out["error"].startswith("downgrade"), out
        out = stage(b3, m3, force=True)
        assert out["ok"], out
        # n1 now offers the old release to the mesh: n2 refuses it as a replay, and never fetches it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st2 = status(bed, 2)
            if st2 and st2["refusals"].get("replayed"):
                break
            time.sleep(0.2)
        assert st2["refusals"].get("replayed"), st2
        assert st2["target"] is None and st2["fetch"] == {}
        # nothing refused changed what n1 holds but the forced one
        assert status(bed, 1)["target"]["id"] == old.id
    finally:
        bed.down()


def test_rollout_coordinator_seat_moves_when_its_node_dies(release, tmp_path):
    """With the coordination service (Raft on all three nodes) the rollout's coordinator holds the Raft
    rollout seat; when its node is killed, another node takes the seat over and keeps the rollout's
    record going."""
    work, kd, rel, b, m, mani = release
    ota = {"installer": "none", "release_file": str(rel), "keys_file": str(kd / keys.RELEASE_KEYS_FILE),
           "keyring": str(kd / "ca.cert.pem"), "auto_fetch": False, "rate_kbit": 800, "rollout_takeover_s": 10}
    bed = coord_bed(tmp_path / "bed", "ring:3", [1, 2, 3], sections={"state": {}, "ota": ota})
    try:
        wait_ota(bed)
        # every member in the Raft group first: the group secret comes from one founding member, and a
        # founder killed before it reached the others would leave no group to hand the seat on
        def grouped() -> bool:
            return all((try_ask(bed, k, {"op": "status"}, 3.0).get("raft") or {}).get("has_quorum") for k in (1, 2, 3))

        assert wait_for(grouped, 120, 0.5), [try_ask(bed, k, {"op": "status"}, 3.0) for k in (1, 2, 3)]
        out = ask(bed, 1, {"op": "stage", "bundle": str(b), "manifest": str(m)}, 120)
        assert out["ok"], out
        deadline = time.monotonic() + 120
        while True:  # the Raft group needs a leader before the seat can be taken
            out = ask(bed, 1, {"op": "rollout_start", "threshold": 0.5}, 60)
            if out["ok"] or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert out["ok"], out
        first = bed.nodes[1].node_id[:8]

        def rollout_by():
            for k in (2, 3):
                st = status(bed, k)
                ro = (st or {}).get("rollout") or {}
                if ro.get("by"):
                    return ro
            return None

        ro = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ro = rollout_by()
            if ro and ro.get("by") == first and ro.get("state") == "running":
                break
            time.sleep(0.5)
        assert ro and ro["by"] == first, ro
        bed.stop(1, sig=signal.SIGKILL)
        others = {bed.nodes[2].node_id[:8], bed.nodes[3].node_id[:8]}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ro = rollout_by()
            if ro and ro.get("by") in others:
                break
            time.sleep(1)
        assert ro and ro.get("by") in others and ro.get("state") == "running", ro
    finally:
        bed.down()

