"""Step `install`: x0node and its pinned runtime dependencies into /usr/lib/x0node, plus BPF objects and
the int8 model, and the on-device manifest (/usr/share/x0tta6bl4/manifest.json).

Rules:
- x0node is installed from a wheel built from this tree; its dependencies are exactly the runtime closure
  of pyproject's `dependencies` under requirements.lock, as binary wheels for the target (cp311,
  manylinux up to glibc 2.36, the board's CPU); the few published only as source (SOURCE_ONLY) are
  built into wheels here and must be pure Python without dependencies. Test-only packages never enter
  the image.
- Downloaded wheels are cached by a key over the architecture, requirements.lock and the runtime
  dependency list; a change to x0node's own code rebuilds only its wheel.
- Byte code is compiled on the build host by /usr/bin/python3, which must be CPython 3.11 like the
  target's (byte code is architecture-independent); the root is read-only, so nothing is compiled at run
  time. Timestamps are not checked (`unchecked-hash`): the files never change under a given image.
- Development code never enters an image: the x0lab package (testbed, fault lab, scenario generator,
  model evaluation) is a separate distribution, and both the wheel and the installed tree are checked
  for it (`dev_only_files`); setuptools' staging directory (build/lib) is cleared before the wheel is
  built, since it would otherwise carry files of modules that have since moved or been deleted.
- The device manifest's `files` maps every BPF object, model and x0node source file's absolute path on
  the device to its sha256; the BPF validator admits only objects listed there.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from typing import Any

from image.board import REPO_ROOT, Board
from image.cache import cache_root, key_of, sha256_file, sha256_tree

TARGET_PYTHON = "3.11"
TARGET_GLIBC_MINOR = 36  # bookworm
SITE_DIR = "usr/lib/x0node"
BPF_DIR = "usr/lib/x0node/bpf"
MODEL_DIR = "usr/share/x0node/models"  # where x0node.anomaly.bundle looks on a device
DEVICE_MANIFEST = "usr/share/x0tta6bl4/manifest.json"
LAUNCHER = "usr/bin/x0node"
_WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
DEV_ONLY_PACKAGES = ("x0lab",)  # top-level packages of development machines only
DEV_ONLY_NAMES = ("testbed", "scenarios")  # package or module names that are development-only anywhere
SOURCE_ONLY = ("pysyncobj",)
"""Runtime dependencies published only as a source archive (pysyncobj 0.3.17 has no wheel on PyPI): built
into a wheel on the build host, which must come out pure Python (`-none-any`) and without dependencies,
so it is the same for every architecture."""
_LAUNCHER_TEXT = """#!/usr/bin/python3 -I
# x0node launcher: the package and its pinned dependencies live in /usr/lib/x0node.
import sys
sys.path.insert(0, "/usr/lib/x0node")
from x0node.cli import main
sys.exit(main())
"""


def platform_tags(arch: str) -> list[str]:
    machine = _WHEEL_ARCH[arch]
    tags = [f"manylinux2014_{machine}"]
    tags += [f"manylinux_2_{minor}_{machine}" for minor in range(17, TARGET_GLIBC_MINOR + 1)]
    return tags


def runtime_requirements() -> list[str]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def _platform_args(arch: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp"]
    for tag in platform_tags(arch):
        args += ["--platform", tag]
    return args


def deps_key(board: Board) -> str:
    return key_of({"arch": board.architecture, "reqs": runtime_requirements(), "source_only": SOURCE_ONLY,
                   "lock": (REPO_ROOT / "requirements.lock").read_text(), "tags": platform_tags(board.architecture)})


def _requirement_name(req: str) -> str:
    return req.split("==", 1)[0].strip().lower()


def _build_source_only(reqs: list[str], dest: pathlib.Path, logf: Any) -> None:
    """Wheels of the SOURCE_ONLY requirements, built here; refused unless pure Python without dependencies."""
    for req in reqs:
        cmd = [*_pip(), "wheel", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", _requirement_name(req),
               "-w", str(dest), "-c", str(REPO_ROOT / "requirements.lock"), req]
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True)
        name = _requirement_name(req).replace("-", "_")
        built = [w for w in dest.glob("*.whl") if w.name.lower().startswith(name + "-")]
        if len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
            raise RuntimeError(f"{req}: expected one pure-Python wheel, built {[w.name for w in built]}")
        with zipfile.ZipFile(built[0]) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            requires = [ln for ln in zf.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]
        if requires:
            raise RuntimeError(f"{req}: built from source but has dependencies {requires}; list them as runtime deps")


def download_deps(board: Board, log: pathlib.Path) -> pathlib.Path:
    """The runtime dependency wheels for the board's architecture (cached); returns their folder."""
    dest = cache_root() / f"wheels-{board.architecture}-{deps_key(board)}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    reqs = runtime_requirements()
    source = [r for r in reqs if _requirement_name(r) in SOURCE_ONLY]
    binary = [r for r in reqs if r not in source]
    cmd = [*_pip(), "download", "-q", "--disable-pip-version-check", "-d", str(tmp),
           "-c", str(REPO_ROOT / "requirements.lock"), *_platform_args(board.architecture), *binary]
    with open(log, "ab") as logf:
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True)
        _build_source_only(source, tmp, logf)
    os.replace(tmp, dest)
    return dest


def dev_only_files(paths: Iterable[str]) -> list[str]:
    """The paths (relative, '/'-separated, as in a wheel or under the install target) that belong to
    development-only code and must not be on a router."""
    bad = []
    for path in paths:
        parts = path.split("/")
        top = parts[0].split("-", 1)[0]  # x0lab or x0lab-0.1.0.dist-info
        if top in DEV_ONLY_PACKAGES or any(p.removesuffix(".py") in DEV_ONLY_NAMES for p in parts):
            bad.append(path)
    return sorted(bad)


def _refuse_dev_only(paths: Iterable[str], where: str) -> None:
    bad = dev_only_files(paths)
    if bad:
        raise RuntimeError(f"development-only files in {where}: {', '.join(bad[:10])}")


def build_wheel(work: pathlib.Path, log: pathlib.Path) -> pathlib.Path:
    """A wheel of x0node from this tree (no dependencies resolved here), checked for dev-only files."""
    wheel_dir = work / "wheel"
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir(parents=True)
    shutil.rmtree(REPO_ROOT / "build" / "lib", ignore_errors=True)  # stale modules would enter the wheel
    # Built by the pinned setuptools of the build's own environment (requirements.lock; the wheel's
    # metadata names its version), not a fresh isolated one pip would make and fill with the newest.
    cmd = [*_pip(), "wheel", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
           "-w", str(wheel_dir), str(REPO_ROOT)]
    with open(log, "ab") as logf:
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True, cwd=REPO_ROOT)
    wheels = list(wheel_dir.glob("x0node-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one x0node wheel in {wheel_dir}, found {wheels}")
    with zipfile.ZipFile(wheels[0]) as zf:
        _refuse_dev_only(zf.namelist(), wheels[0].name)
    return wheels[0]


def source_hash() -> str:
    return sha256_tree(REPO_ROOT / "x0node", ("**/*.py", "**/*.html", "**/*.js", "**/*.css", "**/*.svg",
                                              "**/*.json", "**/*.toml", "**/*.tflite"))


def bpf_objects(root: pathlib.Path = REPO_ROOT) -> list[pathlib.Path]:
    """The compiled BPF objects the image carries (`make bpf` in the checkout `root`)."""
    return sorted((root / "build" / "bpf").glob("*.bpf.o"))


def model_files() -> list[pathlib.Path]:
    """The shipped anomaly model bundle: *.tflite, anomaly_model.json, anomaly_trees.json and SHA256SUMS,
    when present."""
    models = REPO_ROOT / "models"
    files = sorted(models.glob("*.tflite"))
    files += [p for p in (models / "anomaly_model.json", models / "anomaly_trees.json", models / "SHA256SUMS")
              if p.exists()]
    return files


def run(board: Board, rootfs: pathlib.Path, work: pathlib.Path, log: pathlib.Path, version: str) -> dict:
    """Install the payload into rootfs; returns a summary for the image manifest."""
    deps_dir = download_deps(board, log)
    wheel = build_wheel(work, log)
    site = rootfs / SITE_DIR
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    dep_wheels = sorted(deps_dir.glob("*.whl"))
    cmd = [*_pip(), "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index", "--no-compile",
           "--target", str(site), *_platform_args(board.architecture), str(wheel), *map(str, dep_wheels)]
    with open(log, "ab") as logf:
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts pointing at the build host's python
    _refuse_dev_only((p.relative_to(site).as_posix() for p in site.rglob("*")), str(site))
    launcher = rootfs / LAUNCHER
    launcher.write_text(_LAUNCHER_TEXT)
    launcher.chmod(0o755)

    files: dict[str, str] = {}
    bpf_dst = rootfs / BPF_DIR
    bpf_dst.mkdir(parents=True, exist_ok=True)
    for obj in bpf_objects():
        shutil.copyfile(obj, bpf_dst / obj.name)
        files[f"/{BPF_DIR}/{obj.name}"] = sha256_file(obj)
    model_dst = rootfs / MODEL_DIR
    model_dst.mkdir(parents=True, exist_ok=True)
    for model in model_files():
        shutil.copyfile(model, model_dst / model.name)
        files[f"/{MODEL_DIR}/{model.name}"] = sha256_file(model)
    for path in sorted((site / "x0node").rglob("*")):
        if path.is_file():
            files["/" + str(path.relative_to(rootfs))] = sha256_file(path)

    packages = {}
    for dist in sorted(site.glob("*.dist-info")):
        name, _, ver = dist.name[: -len(".dist-info")].rpartition("-")
        packages[name] = ver
    manifest = {"board": board.name, "version": version, "files": files, "python_packages": packages}
    dev_manifest = rootfs / DEVICE_MANIFEST
    dev_manifest.parent.mkdir(parents=True, exist_ok=True)
    dev_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {"python_packages": packages, "bpf_objects": [o.name for o in bpf_objects()],
            "models": [m.name for m in model_files()], "source_sha256": source_hash()}


def compile_bytecode(rootfs: pathlib.Path, log: pathlib.Path) -> None:
    """Byte-compile /usr/lib/x0node with the host's CPython 3.11 (after trimming, before squashing)."""
    host_python = "/usr/bin/python3"
    ver = subprocess.run([host_python, "-c", "import sys;print('%d.%d'%sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if ver != TARGET_PYTHON:
        raise RuntimeError(f"{host_python} is {ver}; byte code for the image needs CPython {TARGET_PYTHON}")
    site = rootfs / SITE_DIR
    cmd = [host_python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
           "-s", str(rootfs), "-p", "/", str(site)]
    with open(log, "ab") as logf:
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True)
