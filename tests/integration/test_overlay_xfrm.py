"""x0node/overlay/xfrm.py against the real kernel, in a namespace: the probe, out and bypass policies
added, dumped (by us and by `ip xfrm`) and removed, and a state with the session's AEAD — installed
and read back where the kernel has ESP with it, else the exact error the probe reports."""

from __future__ import annotations

import errno
import socket
import sys

import pytest

from tests.integration.netns import Namespaces, run

SCRIPT = r"""
import json, socket, sys
from x0node.overlay import xfrm, handshake as hs
from x0node.overlay.esp_plan import PolicySpec, StateSpec, REQID
cipher = int(sys.argv[1])
a = socket.inet_pton(socket.AF_INET6, "fd78:3074:6b14::1"); b = socket.inet_pton(socket.AF_INET6, "fd78:3074:6b14::2")
out = {"probe": xfrm.probe(cipher)}
x = xfrm.Xfrm(bypass_ports=[(socket.IPPROTO_UDP, 6721)])
x.add_bypass(); x.add_policy(PolicySpec(a, b))
out["policies"] = [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in p.items()} for p in x.policies()]
st = StateSpec(False, a, b, 0x1234, hs.ESP_ALGORITHMS[cipher], bytes(range(hs.ESP_KEY_BYTES)), 60)
try:
    x.add_state(st); out["state_error"] = None
except xfrm.XfrmError as e:
    out["state_error"] = e.code
out["states"] = [{"spi": s["spi"], "dst": s["dst"].hex()} for s in x.states()]
import subprocess
out["ip_policy"] = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
out["ip_state"] = subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True).stdout
out["removed"] = x.remove_ours()
out["ip_policy_after"] = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
out["ip_state_after"] = subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True).stdout
print(json.dumps(out))
"""


@pytest.fixture
def ns():
    spaces = Namespaces("x0xf")
    try:
        yield spaces.add()
    finally:
        spaces.cleanup()


@pytest.mark.parametrize("cipher", [1, 2], ids=["chacha20-poly1305", "aes-256-gcm"])
def test_xfrm_calls_against_the_kernel(ns, cipher):
    import json

    out = json.loads(run(sys.executable, "-c", SCRIPT, str(cipher), ns=ns).stdout)
    # the policies went in as meant: `ip xfrm` reads them back
    assert "src fd78:3074:6b14::1/128 dst fd78:3074:6b14::2/128" in out["ip_policy"]
    assert "proto esp reqid 27412 mode transport" in out["ip_policy"]
    assert "proto udp sport 6721" in out["ip_policy"]
    assert {(p["proto"], p["sport"], p["plen"]) for p in out["policies"]} == {(0, 0, 128), (socket.IPPROTO_UDP, 6721, 0)}
    if out["probe"] is None:  # this kernel has ESP with the AEAD: the state is real
        assert out["state_error"] is None
        assert out["states"] == [{"spi": 0x1234, "dst": "fd783074" + "6b14" + "0" * 19 + "2"}]
        assert "proto esp spi 0x00001234 reqid 27412 mode transport" in out["ip_state"]
        assert "replay-window 32" in out["ip_state"]
    else:  # no ESP or no AEAD here: the state is refused the way the probe said
        assert out["state_error"] in (errno.ENOSYS, errno.EPROTONOSUPPORT)
        assert "no" in out["probe"]
        assert out["states"] == []
    assert out["ip_policy_after"].strip() == "" and out["ip_state_after"].strip() == ""
    assert out["removed"] == 2 + len(out["states"])
