"""The image pipeline: named steps run in order, each runnable alone, for one board.

    python -m image.pipeline build --board x86_64          # every step
    python -m image.pipeline step squash --board x86_64    # one step (needs the previous steps' output)
    python -m image.pipeline list                          # step names

Rules: a step reads only the board, the repository and the previous steps' outputs in the board's work
directory (build/image/<board>/), and records what it did in state.json there; the final outputs are
out/<board>/x0-<board>-<version>.img, the root squashfs next to it, manifest.json (board, version,
Debian sources and lock, Debian and Python package lists with versions, sha256 and size of every
artefact) and the bill of materials sbom.cdx.json. Expensive inputs are cached by key (see image.cache):
the bootstrap tarball and the dependency wheels; so are finished images, which `build --reuse` copies
into a new checkout built from the same sources. Every timestamp in the root slot is SOURCE_DATE_EPOCH
(the environment's, else HEAD's commit time), so the same inputs give the same root slot bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from image import assemble, bootstrap, initramfs, overlay, payload, sbom, squash, trim
from image import bundle as update_bundle
from image import lock as locks
from image.board import BIOS_GRUB_TARGET, REPO_ROOT, Board, BoardError, list_boards, load_board
from image.cache import cache_root, key_of, sha256_file, sha256_tree
from x0node.io.atomicfile import write_atomic

MIB = 1024 * 1024


@dataclass(frozen=True)
class Context:
    board: Board
    work: pathlib.Path
    out: pathlib.Path
    version: str
    source_date_epoch: int
    refresh_lock: bool = False
    compression: str = "xz"  # of the root slot (image.squash): gzip for development builds (`make run`)

    @property
    def rootfs(self) -> pathlib.Path:
        return self.work / "rootfs"

    @property
    def squashfs(self) -> pathlib.Path:
        return self.work / "root.sqfs"

    @property
    def disk(self) -> pathlib.Path:
        return self.out / f"x0-{self.board.name}-{self.version}.img"

    @property
    def log(self) -> pathlib.Path:
        return self.work / "build.log"

    def state(self) -> dict:
        path = self.work / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record(self, step: str, result: dict) -> None:
        state = self.state()
        state[step] = result
        (self.work / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")

    def need(self, path: pathlib.Path, step: str) -> None:
        if not path.exists():
            raise RuntimeError(f"{path} is missing: run the `{step}` step first")


def image_version() -> str:
    """<x0node version>-g<git rev>, or $X0_IMAGE_VERSION when set (a release name)."""
    env = os.environ.get("X0_IMAGE_VERSION", "")
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", env):
        return env
    text = (REPO_ROOT / "x0node" / "__init__.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    base = match.group(1) if match else "0"
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=8", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "nogit"
    return f"{base}-g{rev}"


def _sbin_on_path() -> None:
    """mkfs.*, sfdisk and depmod live in /usr/sbin, which a non-login shell may not have on PATH."""
    parts = os.environ.get("PATH", "").split(":")
    for extra in ("/usr/sbin", "/sbin"):
        if extra not in parts:
            parts.append(extra)
    os.environ["PATH"] = ":".join(parts)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the commit time of HEAD: every timestamp in the root slot."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        return int(env)
    try:
        return int(subprocess.run(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def board_for(board: Board, compression: str) -> Board:
    """The board as a build with this root compression lays it out: an xz build is the board itself; a
    gzip build (development, `make run`) has root slots and size limits squash.GZIP_SLOT_FACTOR times
    larger (its manifest and GPT say so; image.provision reads the data partition from the GPT)."""
    if compression == "xz":
        return board
    grow = squash.GZIP_SLOT_FACTOR
    parts = dataclasses.replace(board.partitions, root_slot_mib=math.ceil(board.partitions.root_slot_mib * grow))
    extra = 2 * (parts.root_slot_mib - board.partitions.root_slot_mib)
    return dataclasses.replace(board, partitions=parts, disk_limit_mib=board.disk_limit_mib + extra,
                               squashfs_limit_mib=math.ceil(board.squashfs_limit_mib * grow))


def make_context(board_name: str, work: pathlib.Path | None = None, out: pathlib.Path | None = None,
                 refresh_lock: bool = False, compression: str = "xz") -> Context:
    _sbin_on_path()
    if compression not in squash.COMPRESSION:
        raise BoardError("compression", f"expected one of {', '.join(squash.COMPRESSION)}")
    board = board_for(load_board(board_name), compression)
    work = work or REPO_ROOT / "build" / "image" / board.name
    out = out or REPO_ROOT / "out" / board.name
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return Context(board=board, work=work, out=out, version=image_version(), source_date_epoch=source_date_epoch(),
                   refresh_lock=refresh_lock, compression=compression)


# --- steps -----------------------------------------------------------------------------------------

def step_bootstrap(ctx: Context) -> dict:
    tarball, lock = bootstrap.run(ctx.board, ctx.rootfs, ctx.log, refresh_lock=ctx.refresh_lock)
    return {"tarball": str(tarball), "packages": bootstrap.packages(ctx.board), "lock_sha256": lock.digest(),
            "locked_packages": len(lock.packages), "sources": list(lock.sources),
            "source_date_epoch": lock.source_date_epoch, "releases_seen": locks.release_info(ctx.rootfs)}


def step_install(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "usr/bin/python3", "bootstrap")
    return payload.run(ctx.board, ctx.rootfs, ctx.work, ctx.log, ctx.version)


def step_overlay(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "usr/lib/x0node", "install")
    files = overlay.run(ctx.board, ctx.rootfs)
    ota = update_bundle.device_files(ctx.board, ctx.rootfs, ctx.version, ctx.source_date_epoch, ctx.log)
    return {"files": files, "ota": ota}


def step_sbom(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "var/lib/dpkg/status", "bootstrap")
    ctx.need(ctx.rootfs / "usr/lib/x0node", "install")
    boot = ctx.state().get("bootstrap", {})
    props = [("x0tta6bl4:board", ctx.board.name), ("x0tta6bl4:board_sha256", ctx.board.source_sha256),
             ("x0tta6bl4:debian:lock_sha256", boot.get("lock_sha256", ""))]
    props += [("x0tta6bl4:debian:source", s["line"]) for s in boot.get("sources", [])]
    doc = sbom.document(ctx.rootfs, ctx.board.name, ctx.board.architecture, ctx.version, ctx.source_date_epoch, props)
    errors = sbom.schema_errors(doc)
    if errors:
        raise RuntimeError(f"the bill of materials is not valid CycloneDX {sbom.SPEC_VERSION}: {'; '.join(errors[:5])}")
    sbom.write(doc, ctx.rootfs / sbom.DEVICE_SBOM, ctx.work / sbom.SBOM_NAME)
    kinds = [c["purl"].split("/", 1)[0] for c in doc["components"]]
    return {"components": len(kinds), "debian": kinds.count("pkg:deb"), "python": kinds.count("pkg:pypi"),
            "schema_checked": errors is not None}


def step_trim(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "usr/lib/x0node", "install")
    result = trim.run(ctx.board, ctx.rootfs, ctx.work)
    payload.compile_bytecode(ctx.rootfs, ctx.log)
    return result


def step_initramfs(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "boot/vmlinuz", "trim")
    return initramfs.run(ctx.board, ctx.rootfs)


def step_squash(ctx: Context) -> dict:
    ctx.need(ctx.rootfs / "boot/initrd.img", "initramfs")
    size = squash.run(ctx.rootfs, ctx.squashfs, ctx.log, ctx.source_date_epoch, ctx.compression)
    return {"bytes": size, "sha256": sha256_file(ctx.squashfs), "source_date_epoch": ctx.source_date_epoch,
            "compression": ctx.compression}


def step_assemble(ctx: Context) -> dict:
    ctx.need(ctx.squashfs, "squash")
    grub_dir = ctx.work / "grub" / ctx.board.grub_target
    ctx.need(grub_dir, "trim")
    for old in [*ctx.out.glob(f"x0-{ctx.board.name}-*"), ctx.out / sbom.SBOM_NAME]:
        old.unlink(missing_ok=True)
    bios_dir = ctx.work / "grub" / BIOS_GRUB_TARGET if ctx.board.bios_boot else None
    result = assemble.run(ctx.board, ctx.rootfs, ctx.squashfs, grub_dir, ctx.work, ctx.disk, ctx.log, bios_dir)
    sqfs_out = ctx.out / f"x0-{ctx.board.name}-{ctx.version}.root.sqfs"
    sqfs_out.hardlink_to(ctx.squashfs) if not sqfs_out.exists() else None
    shutil.copyfile(ctx.work / sbom.SBOM_NAME, ctx.out / sbom.SBOM_NAME)
    write_manifest(ctx)
    return result


def step_bundle(ctx: Context) -> dict:
    ctx.need(ctx.squashfs, "squash")
    if ctx.compression != "xz":
        raise RuntimeError("an update bundle carries a router's (xz) root slot: build without --compression gzip")
    return update_bundle.run(ctx.board, ctx.squashfs, ctx.out, ctx.version, ctx.source_date_epoch)


def step_check_size(ctx: Context) -> dict:
    ctx.need(ctx.disk, "assemble")
    disk = ctx.disk.stat().st_size
    sqfs = ctx.squashfs.stat().st_size
    problems = []
    if disk > ctx.board.disk_limit_mib * MIB:
        problems.append(f"disk image {disk / MIB:.1f} MiB > limits.disk {ctx.board.disk_limit_mib} MiB")
    if sqfs > ctx.board.squashfs_limit_mib * MIB:
        problems.append(f"root squashfs {sqfs / MIB:.1f} MiB > limits.squashfs {ctx.board.squashfs_limit_mib} MiB")
    if problems:
        raise RuntimeError("; ".join(problems))
    return {"disk_mib": round(disk / MIB, 1), "squashfs_mib": round(sqfs / MIB, 1)}


STEPS: dict[str, Callable[[Context], dict]] = {
    "bootstrap": step_bootstrap,
    "install": step_install,
    "overlay": step_overlay,
    "sbom": step_sbom,
    "trim": step_trim,
    "initramfs": step_initramfs,
    "squash": step_squash,
    "assemble": step_assemble,
    "bundle": step_bundle,
    "check-size": step_check_size,
}


def write_manifest(ctx: Context) -> dict:
    state = ctx.state()
    artefacts = {}
    for path in [ctx.disk, ctx.out / f"x0-{ctx.board.name}-{ctx.version}.root.sqfs", ctx.work / "esp.img",
                 ctx.rootfs / "boot/vmlinuz", ctx.rootfs / "boot/initrd.img",
                 ctx.rootfs / payload.DEVICE_MANIFEST, ctx.out / sbom.SBOM_NAME]:
        if path.exists():
            artefacts[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    device_manifest = json.loads((ctx.rootfs / payload.DEVICE_MANIFEST).read_text())
    manifest = {
        "board": ctx.board.name,
        "board_sha256": ctx.board.source_sha256,
        "architecture": ctx.board.architecture,
        "root_compression": ctx.compression,
        "version": ctx.version,
        "image": ctx.disk.name,
        "kernel_version": state.get("trim", {}).get("kernel_version"),
        "partitions": [{"name": n, "start_mib": s, "size_mib": z} for n, s, z, _ in assemble.layout(ctx.board)],
        "debian_packages": json.loads((ctx.work / "packages.json").read_text()),
        "debian_sources": state.get("bootstrap", {}).get("sources", []),
        "debian_lock": {"file": f"image/locks/{ctx.board.name}.json",
                        "sha256": state.get("bootstrap", {}).get("lock_sha256"),
                        "source_date_epoch": state.get("bootstrap", {}).get("source_date_epoch")},
        "sbom": sbom.SBOM_NAME,
        "source_date_epoch": ctx.source_date_epoch,
        "python_packages": device_manifest.get("python_packages", {}),
        "device_files": device_manifest.get("files", {}),
        "artefacts": artefacts,
    }
    (ctx.out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def run_step(ctx: Context, name: str) -> dict:
    start = time.monotonic()
    result = STEPS[name](ctx)
    result = {**result, "seconds": round(time.monotonic() - start, 1)}
    ctx.record(name, result)
    return result


# What an image is made of: a change under any of these (or to the two variables) makes a new image.
# Tests, docs and benches are not inputs. The compiled BPF objects the install step copies in
# (build/bpf/*.bpf.o, `make bpf`) are inputs too, by content: a checkout that has not built them makes
# an image without them, which is not the same image.
IMAGE_INPUTS = ("x0node", "image", "rootfs", "board-configs", "bpf", "models", "pyproject.toml", "requirements.lock")
INPUTS_FILE = "inputs.json"


def inputs_digest(board_name: str, compression: str = "xz") -> str:
    """sha256 over the image's source inputs (IMAGE_INPUTS' paths and contents), the variables that
    name or date it and the root's compression; the stage cache below keys each step more finely."""
    parts: dict[str, Any] = {"board": board_name, "X0_IMAGE_VERSION": os.environ.get("X0_IMAGE_VERSION", ""),
                             "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", ""),
                             "compression": compression}
    for name in IMAGE_INPUTS:
        path = REPO_ROOT / name
        if path.is_file():
            parts[name] = sha256_file(path)
        elif path.is_dir():
            parts[name] = sha256_tree(path, ("**/*",))
    parts["bpf_objects"] = {obj.name: sha256_file(obj) for obj in payload.bpf_objects(REPO_ROOT)}
    return key_of(parts)


def reusable(board_name: str, out: pathlib.Path | None = None, compression: str = "xz") -> pathlib.Path | None:
    """The image in out/<board> when a complete build from the same inputs left it there, else None."""
    out = out or REPO_ROOT / "out" / board_name
    try:
        recorded = json.loads((out / INPUTS_FILE).read_text())
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    disk = out / str(manifest.get("image", ""))
    artefact = manifest.get("artefacts", {}).get(disk.name, {})
    if (not isinstance(recorded, dict) or recorded.get("inputs") != inputs_digest(board_name, compression)
            or not disk.is_file() or disk.stat().st_size != artefact.get("bytes")):
        return None
    return disk


# Finished images, kept in the stage cache by what made them (the inputs digest, the version and the
# timestamp), so a second checkout of the same sources on this machine (a new clone, another worktree,
# a branch switched back) gets its image without building it again. Each entry is a directory written
# under a temporary name and renamed, so an interrupted copy never leaves half an entry; only the newest
# KEEP_FINISHED per board stay.
FINISHED_PREFIX = "finished-"
KEEP_FINISHED = 2


def finished_key(board_name: str, inputs: str | None = None, compression: str = "xz", version: str | None = None,
                 epoch: int | None = None) -> str:
    return key_of({"inputs": inputs or inputs_digest(board_name, compression), "version": version or image_version(),
                   "source_date_epoch": source_date_epoch() if epoch is None else epoch})


def keep_finished(board_name: str, out: pathlib.Path, inputs: str, compression: str = "xz",
                  version: str | None = None, epoch: int | None = None) -> pathlib.Path | None:
    """Copy the complete build in `out` into the cache (None when it is not complete). `version` and
    `epoch` are the build's own (its Context's): a commit made while it ran must not key its image."""
    disk = reusable(board_name, out, compression)
    if disk is None:
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    names = sorted({*manifest.get("artefacts", {}), "manifest.json", INPUTS_FILE})
    entry = cache_root() / f"{FINISHED_PREFIX}{board_name}-{finished_key(board_name, inputs, compression, version, epoch)}"
    if entry.is_dir():
        os.utime(entry)
        return entry
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in names:
            if (out / name).is_file():
                subprocess.run(["cp", "--sparse=always", str(out / name), str(tmp / name)], check=True)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mine = re.compile(re.escape(f"{FINISHED_PREFIX}{board_name}-") + "[0-9a-f]{24}")  # not x86_64-generic's
    entries = sorted((p for p in cache_root().iterdir() if p.is_dir() and mine.fullmatch(p.name)),
                     key=lambda p: p.stat().st_mtime)
    for old in entries[:-KEEP_FINISHED]:
        shutil.rmtree(old, ignore_errors=True)
    return entry


def restore_finished(board_name: str, out: pathlib.Path | None = None, compression: str = "xz") -> pathlib.Path | None:
    """The image of a complete build from the same sources, copied from the cache into `out`, or None."""
    out = out or REPO_ROOT / "out" / board_name
    entry = cache_root() / f"{FINISHED_PREFIX}{board_name}-{finished_key(board_name, compression=compression)}"
    if not (entry / INPUTS_FILE).is_file():
        return None
    out.mkdir(parents=True, exist_ok=True)
    (out / INPUTS_FILE).unlink(missing_ok=True)  # out/ is not reusable until every file is in place
    for src in sorted(entry.iterdir()):
        if src.name != INPUTS_FILE:
            subprocess.run(["cp", "--sparse=always", str(src), str(out / src.name)], check=True)
    write_atomic(out / INPUTS_FILE, (entry / INPUTS_FILE).read_bytes(), 0o644)
    os.utime(entry)
    return reusable(board_name, out, compression)


def reuse(board_name: str, compression: str) -> tuple[pathlib.Path, str] | None:
    """An existing image of these sources for a boot (`build --reuse`): (image, where it came from), or
    None. The build's own compression first, in out/ then in the cache; a development (gzip) build also
    takes the router's (xz) image of the same sources, which boots the same."""
    for comp in dict.fromkeys((compression, "xz")):
        kept = reusable(board_name, compression=comp)
        if kept is not None:
            return kept, "built from the same sources"
        copied = restore_finished(board_name, compression=comp)
        if copied is not None:
            return copied, "copied from the cache: built from the same sources in another checkout"
    return None


# Steps whose output a boot does not use: `build --no-bundle` (what `make run` builds) leaves them out.
NOT_FOR_BOOT = ("bundle",)


def build(board_name: str, steps: list[str] | None = None, echo: bool = True, work: pathlib.Path | None = None,
          out: pathlib.Path | None = None, refresh_lock: bool = False, bundle: bool = True,
          compression: str = "xz") -> Context:
    ctx = make_context(board_name, work, out, refresh_lock, compression)
    whole = steps is None
    inputs = inputs_digest(board_name, compression) if whole else ""
    (ctx.out / INPUTS_FILE).unlink(missing_ok=True)  # until this build completes, nothing here is reusable
    if steps is None:
        bundle = bundle and compression == "xz"  # a development build's root fits no router's slot
        steps = [s for s in STEPS if bundle or s not in NOT_FOR_BOOT]
        ctx.log.write_text("")
    total = time.monotonic()
    for name in steps:
        result = run_step(ctx, name)
        if echo:
            print(f"[{ctx.board.name}] {name:<10} {result['seconds']:7.1f} s", flush=True)
    if whole:
        write_atomic(ctx.out / INPUTS_FILE, (json.dumps({"inputs": inputs, "version": ctx.version}) + "\n").encode(), 0o644)
        if out is None:  # the repository's own out/<board>, not a test's or a bench's scratch directory
            keep_finished(board_name, ctx.out, inputs, compression, ctx.version, ctx.source_date_epoch)
    if echo:
        print(f"[{ctx.board.name}] total      {time.monotonic() - total:7.1f} s -> {ctx.disk}", flush=True)
    return ctx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.pipeline", description="Build router images.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser("build", help="run every step for a board")
    p_build.add_argument("--board", default="x86_64")
    p_build.add_argument("--refresh-lock", action="store_true",
                         help="resolve the newest Debian packages and rewrite image/locks/<board>.json")
    p_build.add_argument("--reuse", action="store_true",
                         help="keep the image in out/<board> if a complete build from the same sources left it "
                              "(x0node, image/, rootfs/, board-configs/, bpf/, models/, the Python locks)")
    p_build.add_argument("--no-bundle", action="store_true",
                         help="leave out the signed update bundle (a boot does not use it; `make run`)")
    p_build.add_argument("--compression", choices=list(squash.COMPRESSION), default="xz",
                         help="of the root slot: xz (a router's image, the default) or gzip (a development "
                              "build: 6x less CPU to squash, slots 1.5x the board's; `make run`)")
    p_step = sub.add_parser("step", help="run one step for a board")
    p_step.add_argument("name", choices=list(STEPS))
    p_step.add_argument("--board", default="x86_64")
    sub.add_parser("list", help="list steps and boards")
    sub.add_parser("cache-dir", help="print the stage cache directory")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        print("steps: " + " ".join(STEPS))
        print("boards: " + " ".join(list_boards()))
        return 0
    if args.cmd == "cache-dir":
        print(cache_root())
        return 0
    try:
        if args.cmd == "build":
            found = reuse(args.board, args.compression) if args.reuse and not args.refresh_lock else None
            if found is not None:
                print(f"[{args.board}] up to date: {found[0]} ({found[1]})", flush=True)
            else:
                build(args.board, refresh_lock=args.refresh_lock, bundle=not args.no_bundle,
                      compression=args.compression)
        else:
            build(args.board, [args.name])
    except (BoardError, RuntimeError, OSError, subprocess.CalledProcessError, locks.LockError) as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
