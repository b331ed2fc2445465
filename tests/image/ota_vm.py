"""OTA on QEMU VMs: release builds, a bad build, uploads through the web API, and the power-cut loop.
Used by tests/image/test_ota.py and bench/ota.py (install to marked good, power cuts).

Releases: the first image is the one every image test uses (`built`); release "next" is a second
pipeline build of the same tree with a later SOURCE_DATE_EPOCH (a newer serial) and its own version
name, so its root slot differs (release.json, every time stamp); its bundle is written by the pipeline's
`bundle` step. The bad build is release "next"'s root with one defect — the web UI listens on ::1 only —
repacked with the pipeline's squashfs options and bundled and signed like a release, so only the health
gate can tell it is bad.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import requests

from image import pipeline, squash
from image.board import REPO_ROOT, load_board
from image.bundle import keys_dir
from image.qemu import VM
from tests.image.webclient import REQUEST_TIMEOUT_S, pinned_session, setup_code, wait_http
from x0node.ota import bundle as ota_bundle
from x0node.ota import keys as ota_keys
from x0node.ota import manifest as mf

BOARD = "x86_64"
PROMPT = re.compile(r"root@x0[^\n]*# ")
SLOT_RE = re.compile(r"x0tta6bl4: booting slot ([AB]) try (\d)")
HEALTH_DEADLINE_S = 150
# the test VMs judge a new slot faster than the 600 s default (TCG boots are still slow)
LOCAL_CONFIG = f"[ota]\nhealth_deadline_s = {HEALTH_DEADLINE_S}\nhealth_stable_s = 10\n"
MARKER = "x0-data-marker"
DISK_MIB = 512
"""The VMs' flash: the image (256 MiB) plus room on /data to stage a bundle (provisioning grows /data)."""
REUSE_WAIT_S = 1800
"""bench --reuse-images waits this long for a build of the images that is still running."""
_releases: dict[str, pipeline.Context] = {}


def release(base: pipeline.Context, tag: str, later_s: int) -> pipeline.Context:
    """Another build of the tree as a newer release (`X0_IMAGE_VERSION`, SOURCE_DATE_EPOCH + later_s)."""
    if tag in _releases:
        return _releases[tag]
    old = {k: os.environ.get(k) for k in ("X0_IMAGE_VERSION", "SOURCE_DATE_EPOCH")}
    os.environ["X0_IMAGE_VERSION"] = f"{base.version}-{tag}"
    os.environ["SOURCE_DATE_EPOCH"] = str(base.source_date_epoch + later_s)
    try:
        ctx = pipeline.build(BOARD, work=REPO_ROOT / "build" / "image" / f"{BOARD}-{tag}",
                             out=REPO_ROOT / "out" / f"{BOARD}-{tag}", echo=False)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _releases[tag] = ctx
    return ctx


def existing(work: pathlib.Path, out: pathlib.Path) -> pipeline.Context | None:
    """A finished build in `work`/`out` (its manifest.json names version and epoch), or None."""
    try:
        doc = json.loads((out / "manifest.json").read_text())
        ctx = pipeline.Context(board=load_board(BOARD), work=work, out=out, version=str(doc["version"]),
                               source_date_epoch=int(doc["source_date_epoch"]))
    except (OSError, ValueError, KeyError):
        return None
    try:  # finished after its root slot was squashed (a build still running has an older manifest)
        sq = ctx.squashfs.stat().st_mtime
        done = ctx.disk.exists() and min((out / "manifest.json").stat().st_mtime,
                                         bundle_of(ctx)[1].stat().st_mtime) >= sq
    except OSError:
        return None
    return ctx if done else None


def reuse_builds() -> tuple[pipeline.Context, pipeline.Context] | None:
    """Use the base image and release "next" built before from this tree (bench/ota.py --reuse-images,
    X0_OTA_REUSE_IMAGES=1 for tests/image/test_ota.py) instead of building them again: later `built()`
    and `release(base, "next")` return them. None (and nothing changed) if either is missing."""
    from tests.image import conftest

    base = existing(REPO_ROOT / "build" / "image" / BOARD, REPO_ROOT / "out" / BOARD)
    nxt = existing(REPO_ROOT / "build" / "image" / f"{BOARD}-next", REPO_ROOT / "out" / f"{BOARD}-next")
    if base is None or nxt is None or nxt.source_date_epoch <= base.source_date_epoch:
        return None
    conftest._built[BOARD] = base
    _releases["next"] = nxt
    return base, nxt


def bundle_of(ctx: pipeline.Context) -> tuple[pathlib.Path, pathlib.Path]:
    b = ctx.out / f"x0-{BOARD}-{ctx.version}.raucb"
    return b, ota_bundle.manifest_path(b)


def bad_build(good: pipeline.Context, work: pathlib.Path, later_s: int) -> tuple[pathlib.Path, pathlib.Path]:
    """Release `good` with the web UI bound to ::1 only, as a signed bundle of a newer serial."""
    root = work / "bad-root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), str(good.squashfs)], check=True)
    cfg = root / "usr/share/x0tta6bl4/config.toml.in"
    text = cfg.read_text()
    assert 'listen = "::"' in text
    cfg.write_text(text.replace('listen = "::"', 'listen = "::1"'))
    serial = good.source_date_epoch + later_s
    version = f"{good.version}-bad"
    rel = root / "usr/share/x0tta6bl4/ota/release.json"
    doc = json.loads(rel.read_text())
    rel.write_text(json.dumps(doc | {"version": version, "serial": serial}, indent=1, sort_keys=True) + "\n")
    sqfs = work / "bad.sqfs"
    squash.run(root, sqfs, work / "bad-squash.log", serial)
    shutil.rmtree(root, ignore_errors=True)
    out = work / f"x0-{BOARD}-{version}.raucb"
    kd = keys_dir()
    m = ota_bundle.build(sqfs, BOARD, version, serial, kd, out)
    rk = ota_keys.release_keys(kd)
    signed = mf.sign(m, ota_keys.holder_keys(kd)[: rk.threshold])
    ota_bundle.write_manifest(ota_bundle.manifest_path(out), signed)
    sqfs.unlink()
    return out, ota_bundle.manifest_path(out)


@dataclass
class Ui:
    """The web API of one VM, as the Firmware page uses it (setup once, then a login per boot)."""

    vm: VM
    password: str = ""
    session: requests.Session | None = None
    csrf: str = ""

    def login(self, fingerprint: str, setup_code: str | None = None) -> None:
        wait_http(self.vm.url, 300)
        s = pinned_session(self.vm.url, fingerprint)
        st = s.get(self.vm.url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S).json()
        if setup_code is not None:
            self.password = "x0-ota-" + secrets.token_hex(8)
            r = s.post(self.vm.url + "api/v1/auth/setup", json={"setup_code": setup_code, "password": self.password},
                       headers={"X-CSRF-Token": st["csrf_token"]}, timeout=120)
        else:
            r = s.post(self.vm.url + "api/v1/auth/login", json={"password": self.password},
                       headers={"X-CSRF-Token": st["csrf_token"]}, timeout=120)
        r.raise_for_status()
        self.session = s
        self.csrf = s.get(self.vm.url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S).json()["csrf_token"]

    def get(self) -> dict[str, Any]:
        assert self.session is not None
        r = self.session.get(self.vm.url + "api/v1/ota", timeout=60)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> requests.Response:
        assert self.session is not None
        return self.session.post(self.vm.url + path, json=body, headers={"X-CSRF-Token": self.csrf}, timeout=timeout)

    def upload(self, bundle: pathlib.Path, manifest: pathlib.Path) -> dict[str, Any]:
        """POST the manifest, PUT the bundle (streamed from the file): what the page's upload does."""
        assert self.session is not None
        r = self.post("api/v1/ota/manifest", json.loads(manifest.read_text()))
        if r.status_code != 200:
            return {"status": r.status_code, **r.json()}
        mid = r.json()["id"]
        with open(bundle, "rb") as f:
            r = self.session.put(self.vm.url + f"api/v1/ota/bundle/{mid}", data=f,
                                 headers={"X-CSRF-Token": self.csrf, "Content-Type": "application/octet-stream",
                                          "Content-Length": str(bundle.stat().st_size)}, timeout=1800)
        return {"status": r.status_code, **r.json()}

    def wait(self, pred, timeout_s: float, what: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.get()
                if pred(last):
                    return last
            except (requests.RequestException, ValueError):
                pass
            time.sleep(2)
        raise TimeoutError(f"{what} not seen in {timeout_s:.0f} s; last: {json.dumps(last)[:2000]}")


def restart(vm: VM) -> int:
    """Start the VM again after it rebooted itself or was cut; returns the console mark of this boot.
    (A warm reset of OVMF under TCG sometimes never reaches GRUB again, docs/image.md: a reboot inside
    the guest is followed by a fresh QEMU start, as a power cycle.)"""
    vm.stop()
    vm.start()
    return 0


def wait_reboot(vm: VM, since: int, timeout_s: float) -> None:
    """Wait until the guest asks for a reboot (systemd's message) or QEMU exits, then power-cycle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = vm.console_text(since)
        if not vm.running() or re.search(r"reboot: Restarting system|Reached target .*Reboot|Rebooting", text):
            restart(vm)
            return
        time.sleep(1)
    raise TimeoutError(f"the VM did not reboot in {timeout_s:.0f} s")


def power_cut(vm: VM) -> None:
    """SIGKILL QEMU: the guest gets no chance to flush or unmount."""
    if vm.proc is not None and vm.proc.poll() is None:
        vm.proc.kill()
        vm.proc.wait(10)


def slot_of_this_boot(vm: VM, timeout_s: float) -> str:
    return vm.wait_for(SLOT_RE, timeout_s).group(1)


def data_check(vm: VM, marker: str, key_sha: str) -> bool:
    rc, out = vm.shell(f"cat /data/{MARKER}; sha256sum /data/x0node/node.key | cut -c1-64", timeout_s=120)
    return rc == 0 and marker in out and key_sha in out


def powercut_loop(vm: VM, key_sha: str, cuts: int, boot_timeout_s: float, window_s: float,
                  rng: random.Random, log: list[dict[str, Any]], until: float | None = None) -> int:
    """`cuts` power cuts at random points of install (of the staged newer release) and of the reboot
    that follows (or of a rollback when the newer release is running); after each, the next boot must
    reach a slot whose x0node is ready with /data intact. Returns how many boots were good. With
    `until` (a time.monotonic() value) no cut starts after it: `log` says how many were done."""
    marker = secrets.token_hex(8)
    vm.shell(f"echo {marker} > /data/{MARKER}; sync")
    staged = vm.shell("ls /data/x0node/ota/*/bundle.raucb | head -1")[1].strip().splitlines()[-1]
    good = 0
    for i in range(cuts):
        if until is not None and time.monotonic() > until:
            break
        rc, out = vm.shell("x0node ota status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); "
                           "print(\"PHASE\", d[\"phase\"], d[\"running\"][\"serial\"])'", timeout_s=120)
        action = "install"
        if "PHASE" in out and " good " in out.replace("\n", " ") + " ":
            action = "rollback"
        if action == "install":
            cmd = (f"x0node ota install {staged} --manifest {staged.rsplit('/', 1)[0]}/manifest.json --force "
                   ">/dev/console 2>&1 &")
        else:
            cmd = "x0node ota rollback >/dev/console 2>&1 &"
        vm.send(cmd + "\n")
        at = rng.uniform(0, window_s)
        time.sleep(at)
        text = vm.console_text()
        phase = "reboot" if re.search(r"Rebooting|reboot: Restarting|booting slot", text.split(cmd)[-1]) else action
        power_cut(vm)
        vm.start()
        entry: dict[str, Any] = {"cut": i + 1, "action": action, "at_s": round(at, 1), "during": phase}
        try:
            entry["slot"] = slot_of_this_boot(vm, boot_timeout_s)
            vm.wait_ready(boot_timeout_s)
            vm.wait_for(PROMPT, 120)
            entry["data_ok"] = data_check(vm, marker, key_sha)
        except (TimeoutError, RuntimeError) as exc:
            entry["error"] = str(exc)[:300]
            entry["data_ok"] = False
            # a slot that does not come up still gets its chance: GRUB moves on after its tries
            for _ in range(3):
                power_cut(vm)
                vm.start()
                try:
                    vm.wait_ready(boot_timeout_s)
                    vm.wait_for(PROMPT, 120)
                    break
                except (TimeoutError, RuntimeError):
                    continue
        entry["good"] = bool(entry.get("data_ok")) and "error" not in entry
        good += entry["good"]
        log.append(entry)
        print(f"power cut {i + 1}/{cuts}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    return good


def bench(cuts: int, budget_s: float | None = None, reuse: bool = False) -> dict[str, Any]:
    """bench/ota.py's QEMU part: install to marked good, and `cuts` power cuts (needs root, QEMU); with
    `budget_s`, no power cut starts after that many seconds of this part (the count done is reported)."""
    t_start = time.monotonic()
    import tempfile

    from image import provision
    from image.board import load_board
    from tests.image.conftest import BOOT_TIMEOUT_S, built

    if reuse:
        deadline = time.monotonic() + REUSE_WAIT_S  # a build of them may still be finishing
        while reuse_builds() is None and time.monotonic() < deadline:
            time.sleep(10)
        print(f"reusing the builds in out/{BOARD} and out/{BOARD}-next: {_releases.get('next') is not None}",
              file=sys.stderr, flush=True)
    base = built(BOARD)
    nxt = release(base, "next", 100)
    bundle, manifest = bundle_of(nxt)
    with tempfile.TemporaryDirectory(prefix="x0ota-vm-") as tmp:
        t = pathlib.Path(tmp)
        anchor = provision.make_anchor(t / "anchor.key")
        disk = t / "disk.img"
        subprocess.run(["cp", "--sparse=always", str(base.disk), str(disk)], check=True)
        with open(disk, "r+b") as f:
            f.truncate(DISK_MIB * 1024 * 1024)
        ident = provision.provision(base.board, disk, anchor, debug_console=True,
                                    extra={"x0node/config.local.toml": LOCAL_CONFIG.encode()})
        vm = VM(board=load_board(BOARD), disk=disk, vmdir=t / "vm")
        try:
            vm.start()
            fp = vm.cert_fingerprint(BOOT_TIMEOUT_S[BOARD])
            vm.wait_ready(BOOT_TIMEOUT_S[BOARD])
            vm.wait_for(PROMPT, 120)
            ui = Ui(vm)
            ui.login(fp, setup_code(vm))
            up = ui.upload(bundle, manifest)
            assert up["status"] == 200, up
            since = vm.mark()
            t0 = time.monotonic()
            r = ui.post("api/v1/ota/install", {})
            assert r.status_code == 202, r.text
            wait_reboot(vm, since, 1800)
            vm.wait_ready(BOOT_TIMEOUT_S[BOARD])
            ui.login(fp)
            ui.wait(lambda o: o["phase"] == "good" and o["running"]["version"] == nxt.version, 900, "marked good")
            install_to_good = time.monotonic() - t0
            vm.wait_for(PROMPT, 120)
            import hashlib

            key_sha = hashlib.sha256(ident.key).hexdigest()
            log: list[dict[str, Any]] = []
            print(f"install to marked good: {install_to_good:.1f} s", file=sys.stderr, flush=True)
            until = None if budget_s is None else t_start + budget_s
            good = powercut_loop(vm, key_sha, cuts, BOOT_TIMEOUT_S[BOARD], 120.0, random.Random(17), log, until)
        finally:
            vm.stop()
    return {"install_to_good_s": round(install_to_good, 1), "powercut_good": good, "powercut_total": len(log),
            "powercut_log": log}
