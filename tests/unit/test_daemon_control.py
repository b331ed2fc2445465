"""`x0node status` against the daemon's status socket (x0node/daemon/control.py), over a real router."""

import argparse
import asyncio
import json

from tests.sim.mesh import SimMesh
from x0node.daemon import control
from x0node.state import control as local_socket


def _mesh() -> SimMesh:
    mesh = SimMesh(3, seed=21)
    mesh.connect(0, 1, rate_bps=20e6)
    mesh.connect(1, 2)
    mesh.run_for(3.0)
    return mesh


def test_status_answer_is_the_read_model():
    mesh = _mesh()
    st = control.status_answer(mesh.nodes[1].router, mesh.now)
    json.dumps(st)  # JSON-ready
    assert st["ok"] and st["mesh"]["nodes"] == 2 and st["mesh"]["links"] == 2 and st["mesh"]["max_hops"] == 1
    assert sum(st["mesh"]["quality_histogram"].values()) == 2
    slow = next(n for n in st["neighbours"] if n["ifname"] == "m0")
    assert slow["throughput_source"] == "probe" and abs(slow["throughput_bps"] - 20e6) < 0.5e6
    assert st["commands"] == []
    r1 = mesh.nodes[1].router
    assert r1.steer_around(mesh.nodes[2].router.me, 30.0, mesh.now).ok
    (cmd,) = control.status_answer(r1, mesh.now)["commands"]
    assert (cmd["kind"], cmd["target"], cmd["expires_in_s"]) == ("steer", mesh.nodes[2].router.me.hex(), 30.0)


def test_status_command_over_the_socket(tmp_path, capsys):
    mesh = _mesh()
    r0 = mesh.nodes[0].router
    peer = next(n.node_id for n in r0.neighbours())
    assert r0.drain_link(peer, 30.0, mesh.now).ok

    async def scenario() -> tuple[int, int, int]:
        server = await control.serve(tmp_path / control.SOCKET_NAME, mesh.nodes[0].router, lambda: mesh.now)
        try:
            args = argparse.Namespace(data_dir=str(tmp_path), json=False)
            text = await asyncio.to_thread(control.run, args)
            as_json = await asyncio.to_thread(control.run, argparse.Namespace(data_dir=str(tmp_path), json=True))
            bad = await asyncio.to_thread(local_socket.request, tmp_path / control.SOCKET_NAME, {"op": "shutdown"})
            return text, as_json, int(bad["ok"])
        finally:
            server.close()
            await server.wait_closed()

    text, as_json, bad_ok = asyncio.run(scenario())
    out = capsys.readouterr().out
    assert (text, as_json, bad_ok) == (0, 0, 0)  # nothing but "status" is answered
    assert "mesh: 2 nodes (2 reachable), 2 links" in out and "20.0 Mbit/s probe" in out
    assert f"command drain {peer} x1, cost 65534, expires in 30 s" in out
    doc = json.loads(out[out.index("{"):])
    assert doc["node_id"] == mesh.nodes[0].router.identity.node_id.hex()
    assert control.run(argparse.Namespace(data_dir=str(tmp_path / "none"), json=False)) == 1
