"""The container node: built from the image pipeline's root filesystem without a daemon (umoci), run with
podman in the namespace of a testbed node next to namespace nodes, it joins the mesh as a gateway (its
certificate's role, announcing the default route): its neighbour routes to it, the far node pings its
mesh address and has its default route through the mesh, and the routers' metrics list it as a
reachable gateway. The compose file's provisioning script runs in the same image and certifies its
nodes (node-3 a gateway)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from image import container
from x0lab.testbed import measure
from x0lab.testbed.bed import READY_RE, Testbed
from x0node.fleet import compose, podman
from x0node.proto.keyfile import load_anchor_public, load_certificate, load_node_key
from x0node.proto.trust import Role, TrustStore

JOIN_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(not (shutil.which("podman") and shutil.which("umoci") and shutil.which("runc")),
                                reason="podman, umoci and runc: make deps (mk/fleet.mk)")


def test_container_node_joins_a_namespace_mesh(tmp_path):
    built = container.build("x86_64", echo=False)
    assert "x0node" in built["tags"] and built["bytes"] > 10 * 2**20
    image = podman.pull(container.context("x86_64").out / "oci", container.TAG)
    name = f"x0c-test-{os.getpid()}"
    bed = Testbed.create(tmp_path / "bed", "line:3", "x0node", web=True)
    try:
        bed.start_all(exclude=(3,))  # nodes 1 and 2 in namespaces; node 3 is the container
        node = bed.nodes[3]
        cfg = _as_gateway(bed, node)
        subprocess.run(podman.run_node(image, name, node.ns, cfg, tmp_path / "bed" / "n3"), check=True,
                       capture_output=True, timeout=300)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        ready = None
        while ready is None and time.monotonic() < deadline:
            ready = READY_RE.search(podman.logs(name))
            time.sleep(1.0)
        assert ready is not None, podman.logs(name)[-3000:]
        node.node_id, node.mesh_addr = ready.group(1), ready.group(2)
        assert measure.wait_converged(bed, JOIN_TIMEOUT_S) is not None, podman.logs(name)[-3000:]
        ping = bed.exec(1, "ping", "-6", "-c", "2", "-W", "2", node.mesh_addr, check=False)
        assert re.search(r"[12] received", ping), ping
        metrics = bed.exec(1, "curl", "-sS", "--max-time", "10", "-g", f"http://[{bed.nodes[2].mesh_addr}]:8080/metrics")
        assert f'node_health_status{{node_id="{node.node_id}"}} 1.0' in metrics
        assert f'mesh_addr="{node.mesh_addr}",node_id="{node.node_id}",role="gateway"' in metrics
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while "default" not in (default := bed.exec(1, "ip", "-6", "route", "show", "table", "all", "default",
                                                     check=False)) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert "default via fe80::" in default and "proto" in default, default  # the gateway's ::/0, through node 2
        # it is the container's daemon: the process runs in the image's root, not the host's tree
        top = subprocess.run([*podman.base(), "top", name, "args"], capture_output=True, text=True, timeout=60).stdout
        assert "/usr/bin/x0node run --config" in top or "x0node run --config" in top, top
        _provisioning_script_certifies_the_compose_nodes(image, tmp_path / "provision")
    finally:
        podman.remove(name)
        subprocess.run([*podman.base(), "rmi", "-f", image], capture_output=True, timeout=300)
        bed.down()


def _as_gateway(bed, node):  # type: ignore[no-untyped-def]
    """Certify the node as a gateway and let it announce the default route (docs/routing.md)."""
    import pathlib
    import tomllib

    from x0lab.testbed import provision
    from x0node.daemon.config import dump_toml
    from x0node.io.atomicfile import write_atomic
    from x0node.proto.keyfile import save_certificate

    data = pathlib.Path(node.data_dir)
    anchor = provision.mesh_anchor(bed.run_dir)
    identity = load_node_key(data / "node.key")
    save_certificate(data / "node.cert", anchor.certify(identity.public_key, role=Role.GATEWAY))
    cfg = bed.write_x0node_config(node)
    doc = tomllib.loads(cfg.read_text())
    doc["node"]["prefixes"] = ["::/0"]
    write_atomic(cfg, dump_toml(doc).encode(), 0o644)
    return cfg


def _provisioning_script_certifies_the_compose_nodes(image: str, root):  # type: ignore[no-untyped-def]
    script = compose.COMPOSE_FILE.parent / "provision.sh"
    mounts = ["-v", f"{script}:/provision.sh:ro", "-v", f"{root / 'trust'}:/trust"]
    for n in ("node-1", "node-2", "node-3"):
        (root / n).mkdir(parents=True)
        mounts += ["-v", f"{root / n}:/nodes/{n}"]
    (root / "trust").mkdir()
    run = [*podman.base(), "run", "--rm", "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit",
           "nproc=1024:1024", *mounts, "--entrypoint", "/bin/sh", image, "/provision.sh"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    anchor = load_anchor_public(root / "trust" / "anchor.pub")
    for n, role in (("node-1", Role.NODE), ("node-2", Role.NODE), ("node-3", Role.GATEWAY)):
        cert = load_certificate(root / n / "node.cert")
        assert cert.role == role and TrustStore(anchors=[anchor]).certificate_valid(cert)
        assert cert.public_key == load_node_key(root / n / "node.key").public_key
        assert load_anchor_public(root / n / "anchor.pub") == anchor
