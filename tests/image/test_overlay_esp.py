"""Kernel ESP in the x86_64 router image: the image's Debian kernel loads esp6 and the AEAD on demand,
so the daemon's end-to-end datapath (run by bench/overlay_guest.py in a line of four namespaces inside
one booted guest, the real handshake between the end nodes) picks kernel ESP; traffic between the two
mesh addresses then crosses the middle link as ESP only, with no clear payload, and the states and
policies are gone when the datapath stops. Clear and ESP throughput are recorded, never asserted (TCG);
`bench/overlay.py --guest` runs every variant."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from tests.image.conftest import built, daemon_present

ROOT = pathlib.Path(__file__).resolve().parents[2]
ESP = 50
TCP = 6


@pytest.mark.slow
def test_kernel_esp_in_the_router_image(artifacts_dir: pathlib.Path) -> None:
    if not daemon_present():
        pytest.skip("this tree has no daemon")
    sys.path.insert(0, str(ROOT / "bench"))
    import overlay_guest

    # the session's x86_64 build (later modules boot the same one); the bench runs every mode
    out = overlay_guest.run_in_vm("x86_64", seconds=3.0, modes="clear,esp", ctx=built("x86_64"))
    (artifacts_dir / "overlay-guest.json").write_text(json.dumps(out, indent=1))
    assert out["esp_available"], out.get("esp_unavailable")
    assert out["esp_datapath"] == "kernel-esp"
    cap = out["esp_capture"]
    kinds = {int(k): v for k, v in cap["next_headers"].items()}
    assert kinds.get(ESP, 0) > 100, cap  # the marker stream crossed as ESP...
    assert kinds.get(TCP, 0) == 0 and cap["marker_hits"] == 0, cap  # ...and never in clear
    assert out["esp_state_tx_bytes"] > 0 and out["esp_counters"]["esp_offers_received"] >= 1
    assert "proto esp reqid 27412 mode transport" in out["xfrm_policy_n1"]
    assert out["xfrm_after_stop_n1"].strip() == ""
    assert out["clear_mbps"] > 0 and out["esp_mbps"] > 0
