"""OTA on QEMU VMs: releases derived from the built image, uploads through the web API, refusals, the
bad build's rollback and the power-cut loop. Used by tests/image/test_ota.py and bench/ota.py.

Releases (`releases`): the base image is the one every image test uses (`built`); release "next" is its
root slot with only release.json changed (a newer version and serial), and the bad build is that root
with one defect — the web UI listens on ::1 only — so only the health gate can tell it is bad. Both are
squashed with the pipeline's options and bundled and signed like a release (`image/bundle.py`), and
cached by the base root's hash, so a session whose base image did not change builds neither again.
"""

from __future__ import annotations

import dataclasses
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

from image import cache as image_cache
from image import pipeline, squash
from image.board import REPO_ROOT, load_board
from image.bundle import keys_dir, sign_as_release
from image.qemu import LAB_WATCHDOG_S, VM
from tests.image.webclient import REQUEST_TIMEOUT_S, pinned_session, setup_code, wait_http
from x0node.ota import bundle as ota_bundle
from x0node.ota import keys as ota_keys
from x0node.ota import manifest as mf

BOARD = "x86_64"
PROMPT = re.compile(r"root@x0[^\n]*# ")
SLOT_RE = re.compile(r"x0tta6bl4: booting slot ([AB]) try (\d)")
HEALTH_DEADLINE_S = 150
# the test VMs judge a new slot faster than the 600 s default (TCG boots are still slow); their daemon's
# systemd watchdog is the lab unit's (image/qemu.py LAB_WATCHDOG_S) instead of 6 s (node.watchdog_s, on
# /data so it holds across the reboots): an emulated guest on a loaded host stalls its loop for longer than 6 s (a 100 MB upload over TLS),
# and a watchdog restart in the middle of an upload or a health gate is not what these runs measure
LOCAL_CONFIG = (f"[node]\nwatchdog_s = {LAB_WATCHDOG_S}\n\n"
                f"[ota]\nhealth_deadline_s = {HEALTH_DEADLINE_S}\nhealth_stable_s = 10\n")
MARKER = "x0-data-marker"
DISK_MIB = 512
"""The VMs' flash: the image (256 MiB) plus room on /data to stage a bundle (provisioning grows /data)."""
REUSE_WAIT_S = 1800
"""bench --reuse-images waits this long for a build of the base image that is still running."""
DERIVE_FORMAT = 1
"""Part of the derived releases' cache key: raise it when `releases` makes them differently."""
NEXT_LATER_S, BAD_LATER_S = 100, 200


@dataclass(frozen=True)
class Release:
    """A signed update bundle of the base image's root with its own version and a later serial."""

    version: str
    serial: int
    bundle: pathlib.Path

    @property
    def manifest(self) -> pathlib.Path:
        return ota_bundle.manifest_path(self.bundle)


def _sign_bundle(sqfs: pathlib.Path, version: str, serial: int, out: pathlib.Path) -> Release:
    kd = keys_dir()
    m = ota_bundle.build(sqfs, BOARD, version, serial, kd, out)
    ota_bundle.write_manifest(ota_bundle.manifest_path(out), sign_as_release(m, kd))
    return Release(version, serial, out)


def _set_release(root: pathlib.Path, version: str, serial: int) -> None:
    rel = root / "usr/share/x0tta6bl4/ota/release.json"
    doc = json.loads(rel.read_text())
    rel.write_text(json.dumps(doc | {"version": version, "serial": serial}, indent=1, sort_keys=True) + "\n")


def releases(base: pipeline.Context) -> tuple[Release, Release]:
    """Release "next" and the bad build, both made from `base`'s root slot (one unsquashfs, two xz
    squashes with the pipeline's options, bundled and signed like a release by the pipeline's keys):
    - next: only release.json differs (version `<base>-next`, serial base + 100), so it is the base
      image's software as a newer release;
    - bad: release `<base>-bad` (serial base + 200) whose web UI listens on ::1 only, so it boots and
      routes and only the health gate (UI answering) can tell it is bad.
    They are cached under the image cache, keyed by the base root's SHA-256, the signing keys and
    DERIVE_FORMAT (the squashes are reproducible; a new base or new keys make them again)."""
    kd = keys_dir()
    key = image_cache.key_of({"format": DERIVE_FORMAT, "base": image_cache.sha256_file(base.squashfs),
                              "version": base.version, "epoch": base.source_date_epoch,
                              "cert": image_cache.sha256_file(kd / "signing.cert.pem"),
                              "keys": image_cache.sha256_file(kd / ota_keys.RELEASE_KEYS_FILE)})
    d = image_cache.cache_root() / f"ota-releases-{BOARD}-{key}"
    nxt = Release(f"{base.version}-next", base.source_date_epoch + NEXT_LATER_S,
                  d / f"x0-{BOARD}-{base.version}-next.raucb")
    bad = Release(f"{base.version}-bad", base.source_date_epoch + BAD_LATER_S, d / f"x0-{BOARD}-{base.version}-bad.raucb")
    if all(p.exists() for r in (nxt, bad) for p in (r.bundle, r.manifest)):
        return nxt, bad
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        root = tmp / "root"
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), str(base.squashfs)], check=True)
        made = []
        for rel, edit in ((nxt, None), (bad, "usr/share/x0tta6bl4/config.toml.in")):
            _set_release(root, rel.version, rel.serial)
            if edit is not None:
                cfg = root / edit
                text = cfg.read_text()
                assert 'listen = "::"' in text
                cfg.write_text(text.replace('listen = "::"', 'listen = "::1"'))
            sqfs = tmp / f"{rel.version}.sqfs"
            squash.run(root, sqfs, tmp / "squash.log", rel.serial)
            made.append(_sign_bundle(sqfs, rel.version, rel.serial, tmp / rel.bundle.name))
            sqfs.unlink()
        shutil.rmtree(root)
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return nxt, bad


def reuse_base() -> pipeline.Context | None:
    """Use the base image built before from this tree (out/x86_64; bench/ota.py --reuse-images,
    X0_OTA_REUSE_IMAGES=1) instead of building it again: later `built()` returns it. None (and nothing
    changed) if it is missing or unfinished."""
    from tests.image import conftest

    work, out = REPO_ROOT / "build" / "image" / BOARD, REPO_ROOT / "out" / BOARD
    try:
        doc = json.loads((out / "manifest.json").read_text())
        ctx = pipeline.Context(board=load_board(BOARD), work=work, out=out, version=str(doc["version"]),
                               source_date_epoch=int(doc["source_date_epoch"]))
        # finished after its root slot was squashed (a build still running has an older manifest)
        if not ctx.disk.exists() or (out / "manifest.json").stat().st_mtime < ctx.squashfs.stat().st_mtime:
            return None
    except (OSError, ValueError, KeyError):
        return None
    conftest._built[BOARD] = ctx
    return ctx


@dataclass
class Ui:
    """The web API of one VM, as the Firmware page uses it (setup once, then a login per boot)."""

    vm: VM
    password: str = ""
    session: requests.Session | None = None
    csrf: str = ""
    fingerprint: str = ""

    def login(self, fingerprint: str, setup_code: str | None = None) -> None:
        self.fingerprint = fingerprint
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
        """GET /api/v1/ota; signs in again when the session is gone (sessions live in the daemon's memory:
        a daemon restart, e.g. by its watchdog on a loaded TCG guest, ends them). A connection the server
        closed under the client (ConnectionError before any answer) is retried once on a new one: a GET
        changes nothing."""
        assert self.session is not None
        try:
            r = self.session.get(self.vm.url + "api/v1/ota", timeout=60)
        except requests.ConnectionError:
            self.session.close()  # drops the pooled connections; the session (cookies) stays usable
            time.sleep(2)
            r = self.session.get(self.vm.url + "api/v1/ota", timeout=60)
        if r.status_code == 401 and self.password:
            self.login(self.fingerprint)
            assert self.session is not None
            r = self.session.get(self.vm.url + "api/v1/ota", timeout=60)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> requests.Response:
        assert self.session is not None
        return self.session.post(self.vm.url + path, json=body, headers={"X-CSRF-Token": self.csrf}, timeout=timeout)

    def upload(self, bundle: pathlib.Path, manifest: pathlib.Path) -> dict[str, Any]:
        """POST the manifest, PUT the bundle (streamed from the file): what the page's upload does. The
        PUT's connection is not kept: a refused upload is answered before its body is read, and the server
        then closes that connection, which a later request on it would find closed."""
        assert self.session is not None
        r = self.post("api/v1/ota/manifest", json.loads(manifest.read_text()))
        if r.status_code != 200:
            return {"status": r.status_code, **r.json()}
        mid = r.json()["id"]
        with open(bundle, "rb") as f:
            r = self.session.put(self.vm.url + f"api/v1/ota/bundle/{mid}", data=f,
                                 headers={"X-CSRF-Token": self.csrf, "Content-Type": "application/octet-stream",
                                          "Content-Length": str(bundle.stat().st_size), "Connection": "close"},
                                 timeout=1800)
        self.session.close()  # no pooled connection outlives the upload (see above)
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
    vm.stop()  # QEMU is gone: this only drops the console connection (the next start opens a new one)


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
            # recorded, not judged: x0node loads the firewall itself, so a ready x0node has it either way
            state = vm.shell("systemctl is-active x0-firewall.service", timeout_s=120)[1].split()
            entry["early_firewall"] = state[-1] if state else "?"
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


def refusal_cases(nxt: Release, running_serial: int) -> list[tuple[dict[str, Any], str]]:
    """Manifests a node must refuse, each with the reason it must give: signed by the release keys but
    for another board; signed but older than the running release; one changed after it was signed."""
    kd = keys_dir()
    m = mf.parse(nxt.manifest.read_bytes()).manifest

    def signed(x: mf.Manifest) -> dict[str, Any]:
        return json.loads(sign_as_release(x, kd).encode())

    forged = signed(m)
    forged["manifest"]["version"] = m.version + "-forged"
    return [(signed(dataclasses.replace(m, board="rpi4")), "wrong_board"),
            (signed(dataclasses.replace(m, version=m.version + "-old", serial=running_serial - 1)), "downgrade"),
            (forged, "bad_signature")]


def replay_case(nxt: Release) -> dict[str, Any]:
    """A manifest signed by the release keys with release "next"'s serial under another version: once
    "next" was installed, a node refuses it as `replayed` (the serial is not above the highest it ran)."""
    m = mf.parse(nxt.manifest.read_bytes()).manifest
    return json.loads(sign_as_release(dataclasses.replace(m, version=m.version + "-again"), keys_dir()).encode())


def tampered_copy(rel: Release, work: pathlib.Path) -> pathlib.Path:
    """The release's bundle with one byte of its first chunk changed (the signed manifest unchanged)."""
    out = work / ("tampered-" + rel.bundle.name)
    subprocess.run(["cp", "--sparse=always", str(rel.bundle), str(out)], check=True)
    with open(out, "r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 0xFF]))
    return out


def install_bad_and_wait_rollback(vm: VM, ui: Ui, fp: str, bad: Release, boot_timeout_s: float) -> dict[str, Any]:
    """Upload the bad build through the UI and install it; the new slot fails the health gate, is marked
    bad and the VM reboots into the slot it came from with no human. Returns the final OTA view. After a
    power cut the booted update may still wait for its health gate, and no install starts before it is
    decided (409 "busy"), so this first waits for that."""
    before = ui.wait(lambda o: o["phase"] not in ("installing", "installed", "pending"),
                     HEALTH_DEADLINE_S + 2 * boot_timeout_s, "the booted update's health gate decided")
    up = ui.upload(bad.bundle, bad.manifest)
    assert up["status"] == 200 and up["phase"] == "verified", up
    since = vm.mark()
    r = ui.post("api/v1/ota/install", {})
    assert r.status_code == 202, r.text
    wait_reboot(vm, since, 1800)
    assert slot_of_this_boot(vm, boot_timeout_s) != before["booted"]
    since = vm.mark()
    wait_reboot(vm, since, HEALTH_DEADLINE_S + 2 * boot_timeout_s)  # the gate's verdict: mark-bad, reboot
    assert slot_of_this_boot(vm, boot_timeout_s) == before["booted"]
    vm.wait_ready(boot_timeout_s)
    vm.wait_for(PROMPT, 120)
    ui.login(fp)
    o = ui.wait(lambda o: o["phase"] == "rolled_back", 600, "the VM reporting the rollback")
    assert o["booted"] == before["booted"] and o["running"]["version"] == before["running"]["version"], o
    return o


def bench(cuts: int, budget_s: float | None = None, reuse: bool = False, bad_build: bool = True) -> dict[str, Any]:
    """bench/ota.py's QEMU part (needs root, QEMU): release "next" uploaded through the web API and
    installed (install → marked good), `cuts` power cuts, then the bad build installed and rolled back by
    the health gate with no human (unless not `bad_build`: its figures are then null). With `budget_s`,
    no power cut starts after that many seconds of this part (the count done is reported)."""
    t_start = time.monotonic()
    import hashlib
    import tempfile

    from image import provision
    from tests.image.conftest import BOOT_TIMEOUT_S, built

    if reuse:
        deadline = time.monotonic() + REUSE_WAIT_S  # a build of it may still be finishing
        while reuse_base() is None and time.monotonic() < deadline:
            time.sleep(10)
    base = built(BOARD)
    nxt, bad = releases(base)
    T = BOOT_TIMEOUT_S[BOARD]
    res: dict[str, Any] = {"install_to_good_s": None, "powercut_good": None, "powercut_total": None,
                           "bad_rolled_back": None, "bad_rollback_s": None}
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
            fp = vm.cert_fingerprint(T)
            vm.wait_ready(T)
            vm.wait_for(PROMPT, 120)
            ui = Ui(vm)
            ui.login(fp, setup_code(vm))
            up = ui.upload(nxt.bundle, nxt.manifest)
            assert up["status"] == 200, up
            since = vm.mark()
            t0 = time.monotonic()
            r = ui.post("api/v1/ota/install", {})
            assert r.status_code == 202, r.text
            wait_reboot(vm, since, 1800)
            vm.wait_ready(T)
            ui.login(fp)
            ui.wait(lambda o: o["phase"] == "good" and o["running"]["version"] == nxt.version, 900, "marked good")
            res["install_to_good_s"] = round(time.monotonic() - t0, 1)
            vm.wait_for(PROMPT, 120)
            print(f"install to marked good: {res['install_to_good_s']} s", file=sys.stderr, flush=True)
            key_sha = hashlib.sha256(ident.key).hexdigest()
            log: list[dict[str, Any]] = []
            until = None if budget_s is None else t_start + budget_s
            good = powercut_loop(vm, key_sha, cuts, T, 120.0, random.Random(17), log, until)
            res.update(powercut_good=good, powercut_total=len(log), powercut_log=log)
            if not bad_build:
                return res
            t0 = time.monotonic()
            o = install_bad_and_wait_rollback(vm, ui, fp, bad, T)
            res.update(bad_rolled_back=True, bad_rollback_s=round(time.monotonic() - t0, 1),
                       bad_rollback_why=o["why"][:200])
        except Exception as exc:  # noqa: BLE001 - report what was measured up to here, and what failed
            res["qemu_error"] = f"{type(exc).__name__}: {exc}"[:600]
            if res["powercut_total"] is not None and res["bad_rolled_back"] is None:
                res["bad_rolled_back"] = False
        finally:
            vm.stop()
            # the guest's whole serial console (every boot of every cut), to find why a cut went bad
            keep = REPO_ROOT / "test-artifacts" / f"ota-bench-serial-{os.getpid()}.log"
            keep.parent.mkdir(exist_ok=True)
            if vm.serial_log.exists():
                shutil.copyfile(vm.serial_log, keep)
                res["serial_log"] = str(keep.relative_to(REPO_ROOT))
    return res
