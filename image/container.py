"""A container image of x0node from the image pipeline's root filesystem, built without a daemon (umoci).

    python -m image.container build --board x86_64     # -> out/container/<board>/oci (OCI image layout)
    podman pull oci:out/container/x86_64/oci:x0node     # or any OCI runtime / registry push (skopeo)

Rules and invariants:
- The root is the one a router boots: the pipeline's own steps up to trim (bootstrap -> install ->
  overlay -> sbom -> trim; image/pipeline.py, the same functions, caches and package lock; the SBOM
  stays in the root), run in a work directory of their own
  (build/container/<board>/), so a container build never touches an image build's work directory. This
  module adds one step after them and changes none of theirs.
- The layer leaves out what only a booted machine uses: /boot and /lib/modules (the host's kernel runs a
  container). The staging copy is made of hard links, so the root itself is never altered.
- The image runs `/usr/bin/x0node run --config /etc/x0node/config.toml`: the config, with `data_dir`
  on a mounted volume, decides whether it is a virtual mesh node or a gateway (the certificate's role;
  docs/fleet.md). It needs CAP_NET_ADMIN and CAP_NET_RAW and a network namespace with the mesh
  interfaces (`podman run --network ns:/run/netns/NAME` joins an existing one).
- The OCI layout is written afresh each build (umoci init), tagged `x0node` and with the image version.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time

from image import pipeline
from image.board import REPO_ROOT, BoardError, load_board
from x0node.proto.protocol import MESH_UDP_PORT

# the pipeline's steps up to and including trim (bootstrap, install, overlay, sbom, trim today)
ROOT_STEPS = tuple(list(pipeline.STEPS)[: list(pipeline.STEPS).index("trim") + 1])
LEFT_OUT = ("boot", "lib/modules", "usr/lib/modules")
TAG = "x0node"
ENTRYPOINT = ["/usr/bin/x0node"]
CMD = ["run", "--config", "/etc/x0node/config.toml"]
OCI_ARCH = {"amd64": "amd64", "arm64": "arm64"}


def context(board_name: str) -> pipeline.Context:
    name = load_board(board_name).name
    return pipeline.make_context(board_name, work=REPO_ROOT / "build" / "container" / name,
                                 out=REPO_ROOT / "out" / "container" / name)


def _run(cmd: list[str], log: pathlib.Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def pack(ctx: pipeline.Context) -> dict:
    """Step `container`: the trimmed root as a one-layer OCI image (umoci, no daemon)."""
    ctx.need(ctx.rootfs / "usr/bin/x0node", "install")
    stage = ctx.work / "stage"
    layout = ctx.out / "oci"
    for path in (stage, layout):
        if path.exists():
            shutil.rmtree(path)
    _run(["cp", "-al", str(ctx.rootfs), str(stage)], ctx.log)
    for rel in LEFT_OUT:
        target = stage / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
    arch = OCI_ARCH.get(ctx.board.architecture, ctx.board.architecture)
    image = f"{layout}:{TAG}"
    _run(["umoci", "init", "--layout", str(layout)], ctx.log)
    _run(["umoci", "new", "--image", image], ctx.log)
    _run(["umoci", "insert", "--image", image, str(stage), "/"], ctx.log)
    config = ["umoci", "config", "--image", image, "--os", "linux", "--architecture", arch,
              "--config.workingdir", "/", "--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
              "--config.stopsignal", "SIGTERM", "--config.label", f"org.opencontainers.image.version={ctx.version}",
              "--config.label", "org.opencontainers.image.title=x0node", "--config.volume", "/data",
              "--config.exposedports", f"{MESH_UDP_PORT}/udp", "--config.exposedports", "8080/tcp", "--clear", "config.entrypoint"]
    for word in ENTRYPOINT:
        config += ["--config.entrypoint", word]
    for word in CMD:
        config += ["--config.cmd", word]
    _run(config, ctx.log)
    _run(["umoci", "tag", "--image", image, ctx.version], ctx.log)
    _run(["umoci", "gc", "--layout", str(layout)], ctx.log)
    shutil.rmtree(stage)
    index = json.loads((layout / "index.json").read_text())
    size = sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())
    return {"layout": str(layout), "tags": [m["annotations"]["org.opencontainers.image.ref.name"]
                                            for m in index.get("manifests", [])], "bytes": size,
            "architecture": arch}


def build(board_name: str, echo: bool = True) -> dict:
    ctx = context(board_name)
    ctx.log.write_text("")
    for name in ROOT_STEPS:
        result = pipeline.run_step(ctx, name)
        if echo:
            print(f"[container/{ctx.board.name}] {name:<10} {result['seconds']:7.1f} s", flush=True)
    start = time.monotonic()
    result = {**pack(ctx), "seconds": round(time.monotonic() - start, 1)}
    ctx.record("container", result)
    if echo:
        print(f"[container/{ctx.board.name}] container  {result['seconds']:7.1f} s -> {result['layout']}:{TAG} "
              f"({result['bytes'] / 2**20:.0f} MiB)", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m image.container", description="Build the x0node container image.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="root filesystem steps, then the OCI image")
    b.add_argument("--board", default="x86_64")
    p = sub.add_parser("pack", help="only the OCI image, from the root the previous build left")
    p.add_argument("--board", default="x86_64")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.board)
        else:
            ctx = context(args.board)
            print(json.dumps(pack(ctx)))
    except (BoardError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"container build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
