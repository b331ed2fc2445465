"""Image build and boot figures: cold and cached build time per board, disk image and root squashfs
sizes, and boot-to-ready time under TCG (QEMU start to the daemon's ready line on the serial console;
boot-to-login when the tree has no daemon).

    .venv/bin/python bench/image.py                 # both boards, cold + cached (about 15 min here)
    .venv/bin/python bench/image.py --boards x86_64 # one board (also x86_64-generic, rpi4)
    .venv/bin/python bench/image.py --no-cold       # cached builds only (uses the normal cache)

"Cold" builds with an empty stage cache (a temporary X0_IMAGE_CACHE, so Debian packages and wheels are
downloaded and the bootstrap is rebuilt from the board's package lock); "cached" rebuilds right after with
the cache warm, which is the rebuild after a Python change. The root slot's sha256 is recorded after
each build: equal hashes mean the cold build (a new bootstrap) and the cached one gave the same bytes. Prints a table, then one JSON line {"bench": "image", ...} whose ratios are
against the goals (x86_64 cold 8 min, arm64 cold 20 min, disk 256 MB, squashfs 160 MB, ready 45 s) and,
for every board, against its own `[limits]` (`<board>_disk_vs_limit`, `<board>_squashfs_vs_limit`: MiB
over MiB; the build fails above 1). `<board>_cached_bootstrap_s` is the bootstrap step's time in the
cached build (state.json): seconds when the tarball came from the cache, many minutes when it did not.
Not part of `make bench` (too long for it); run it by hand or with `make bench-image`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from image import pipeline, provision  # noqa: E402
from image.qemu import DIRECT_KERNEL, VM, image_path, slot_boot_files  # noqa: E402

GOALS = {"x86_64_cold_s": 480, "arm64-virt_cold_s": 1200, "disk_mb": 256, "squashfs_mb": 160, "ready_s": 45}
PROMPT = re.compile(r"root@x0[^\n]*# ")
BOOT_TIMEOUT_S = {"x86_64": 300.0, "arm64-virt": 900.0, "x86_64-generic": 600.0, "rpi4": 900.0}
BOARDS = ("x86_64", "arm64-virt", "x86_64-generic", "rpi4")
MIB = 1024 * 1024


def root_slot_sha256(board: str) -> str:
    from image.cache import sha256_file

    return sha256_file(pipeline.make_context(board).squashfs)


def step_seconds(board: str, step: str) -> float | None:
    """The seconds one step of the last build of `board` took (build/image/<board>/state.json)."""
    state = pipeline.make_context(board).work / "state.json"
    try:
        return json.loads(state.read_text()).get(step, {}).get("seconds")
    except (OSError, ValueError):
        return None


def timed_build(board: str, cache: str | None) -> float:
    env = dict(os.environ)
    if cache is not None:
        env["X0_IMAGE_CACHE"] = cache
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "image.pipeline", "build", "--board", board], check=True, env=env,
                   cwd=pipeline.REPO_ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def boot_time(board: str, anchor: pathlib.Path, tmp: pathlib.Path) -> tuple[float | None, float]:
    """(seconds to the ready line or None without a daemon, seconds to the console prompt)."""
    ctx = pipeline.make_context(board)
    disk = tmp / f"{board}.img"
    subprocess.run(["cp", "--sparse=always", str(image_path(ctx.board)), str(disk)], check=True)
    provision.provision(ctx.board, disk, anchor, debug_console=True)
    kernel = initrd = None
    if ctx.board.qemu is not None and ctx.board.qemu.firmware == DIRECT_KERNEL:  # rpi4: the slot's kernel on virt
        kernel, initrd = slot_boot_files(ctx.board)
    vm = VM(board=ctx.board, disk=disk, vmdir=tmp / f"vm-{board}", kernel=kernel, initrd=initrd)
    vm.start()
    try:
        vm.wait_for(PROMPT, BOOT_TIMEOUT_S[board])
        prompt_s = time.monotonic() - vm.started_at
        daemon = (pipeline.REPO_ROOT / "x0node/daemon/cli.py").exists()
        ready_s = vm.wait_ready(BOOT_TIMEOUT_S[board])[2] if daemon else None
        return ready_s, prompt_s
    finally:
        vm.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", nargs="+", default=["x86_64", "arm64-virt"], choices=BOARDS)
    parser.add_argument("--no-cold", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"bench": "image", "cores": os.cpu_count()}
    rows = []
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = pathlib.Path(tmpname)
        anchor = provision.make_anchor(tmp / "anchor.key")
        for board in args.boards:
            cold = None if args.no_cold else timed_build(board, str(tmp / f"cache-{board}"))
            cold_sha = None if cold is None else root_slot_sha256(board)
            cached = timed_build(board, None if args.no_cold else str(tmp / f"cache-{board}"))
            cached_sha = root_slot_sha256(board)
            cached_bootstrap_s = step_seconds(board, "bootstrap")
            ctx = pipeline.make_context(board)
            disk_bytes, sqfs_bytes = image_path(ctx.board).stat().st_size, ctx.squashfs.stat().st_size
            disk_mb, sqfs_mb = disk_bytes / 1e6, sqfs_bytes / 1e6
            ready_s, prompt_s = boot_time(board, anchor, tmp)
            result[f"{board}_cold_build_s"] = None if cold is None else round(cold, 1)
            result[f"{board}_cached_build_s"] = round(cached, 1)
            result[f"{board}_cached_bootstrap_s"] = cached_bootstrap_s
            result[f"{board}_root_slot_sha256"] = cached_sha
            if cold_sha is not None:
                result[f"{board}_root_slot_reproducible"] = cold_sha == cached_sha
            result[f"{board}_disk_mb"] = round(disk_mb, 1)
            result[f"{board}_squashfs_mb"] = round(sqfs_mb, 1)
            result[f"{board}_boot_to_ready_s"] = None if ready_s is None else round(ready_s, 1)
            result[f"{board}_boot_to_login_s"] = round(prompt_s, 1)
            if cold is not None and f"{board}_cold_s" in GOALS:
                result[f"{board}_cold_vs_goal"] = round(cold / GOALS[f"{board}_cold_s"], 2)
            result[f"{board}_squashfs_vs_goal"] = round(sqfs_mb / GOALS["squashfs_mb"], 2)
            result[f"{board}_disk_vs_goal"] = round(disk_mb / GOALS["disk_mb"], 2)
            result[f"{board}_disk_vs_limit"] = round(disk_bytes / MIB / ctx.board.disk_limit_mib, 2)
            result[f"{board}_squashfs_vs_limit"] = round(sqfs_bytes / MIB / ctx.board.squashfs_limit_mib, 2)
            if ready_s is not None:
                result[f"{board}_ready_vs_goal"] = round(ready_s / GOALS["ready_s"], 2)
            rows.append((board, cold, cached, disk_mb, sqfs_mb, ready_s, prompt_s))
    print(f"{'board':<15} {'cold s':>8} {'cached s':>9} {'disk MB':>8} {'sqfs MB':>8} {'ready s':>8} {'login s':>8}")
    for board, cold, cached, disk_mb, sqfs_mb, ready_s, prompt_s in rows:
        print(f"{board:<15} {cold if cold is not None else float('nan'):8.1f} {cached:9.1f} {disk_mb:8.1f} "
              f"{sqfs_mb:8.1f} {ready_s if ready_s is not None else float('nan'):8.1f} {prompt_s:8.1f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
