"""Fixtures for the image tests: built images (one build per board per session), a trust anchor, and
provisioned VMs that are always stopped.

Budget (2 cores, TCG): x86_64 build 1-3 min (cold bootstrap about 30 s more), each x86_64 boot about
30-40 s; arm64 build about 3-4 min cold (bootstrap cached by input key under X0_IMAGE_CACHE or
~/.cache/x0tta6bl4/image; a miss rebuilds), arm64 boot 1.5-3 min. On a machine shared with other heavy
jobs all of this takes several times longer (a ready line after 5 minutes has been seen), hence the
generous boot timeouts: they bound a hang, they do not measure anything.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from image import pipeline, provision
from image.board import load_board
from image.qemu import VM

BOOT_TIMEOUT_S = {"x86_64": 480.0, "arm64-virt": 900.0, "x86_64-generic": 600.0, "rpi4": 900.0}
# Per test (pytest-timeout; the suite's default is 600 s): a build plus boots on a loaded machine.
IMAGE_TEST_TIMEOUT_S = 2700


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).resolve().parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.timeout(IMAGE_TEST_TIMEOUT_S))


def daemon_present() -> bool:
    """True when this tree has the daemon (`x0node run`)."""
    out = subprocess.run([pipeline.sys.executable, "-m", "x0node", "--help"], capture_output=True, text=True)
    return "run" in out.stdout.split("COMMAND", 2)[-1] and (pipeline.REPO_ROOT / "x0node/daemon/cli.py").exists()


_built: dict[str, pipeline.Context] = {}


def built(board: str) -> pipeline.Context:
    if board not in _built:
        _built[board] = pipeline.build(board)
    return _built[board]


@pytest.fixture(scope="session")
def anchor(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("anchor") / "anchor.key"
    return provision.make_anchor(path)


class VMFactory:
    def __init__(self, base: pathlib.Path, anchor: pathlib.Path) -> None:
        self.base = base
        self.anchor = anchor
        self.vms: list[VM] = []

    def make(self, board: str, name: str, extra: dict[str, bytes] | None = None, disk_mib: int | None = None,
             wifi_mesh_key: bytes | None = None, **vm_args) -> tuple[VM, provision.Identity]:
        """A provisioned copy of the built image; `extra` files go onto /data (path relative to it);
        `disk_mib`: a larger disk (flash), whose rest provisioning gives to the data partition;
        `wifi_mesh_key`: the 802.11s mesh key (boards with [wifi_mesh])."""
        ctx = built(board)
        vmdir = self.base / name
        vmdir.mkdir(parents=True, exist_ok=True)
        disk = vmdir / "disk.img"
        subprocess.run(["cp", "--sparse=always", str(ctx.disk), str(disk)], check=True)
        if disk_mib:
            with open(disk, "r+b") as f:
                f.truncate(max(f.seek(0, 2), disk_mib * 1024 * 1024))
        ident = provision.provision(ctx.board, disk, self.anchor, debug_console=True, extra=extra,
                                    wifi_mesh_key=wifi_mesh_key)
        vm = VM(board=load_board(board), disk=disk, vmdir=vmdir, **vm_args)
        self.vms.append(vm)
        return vm, ident

    def stop_all(self) -> None:
        for vm in self.vms:
            vm.stop()


@pytest.fixture
def vms(tmp_path: pathlib.Path, anchor: pathlib.Path, artifacts_dir: pathlib.Path) -> Iterator[VMFactory]:
    factory = VMFactory(tmp_path, anchor)
    try:
        yield factory
    finally:
        factory.stop_all()
        for vm in factory.vms:
            if vm.serial_log.exists():
                shutil.copyfile(vm.serial_log, artifacts_dir / f"{vm.vmdir.name}-serial.log")


# Two emulated (TCG) guests on a shared, loaded host see each other's 0.1 s keepalives seconds late (a
# guest importing its models holds its one vCPU for seconds), and the default 0.25 s dead interval flaps
# the adjacency; a real link does not. The mesh tests are about forming a mesh through the image, so the
# guests get the longest dead interval the config allows (5 s).
EMULATION_HELLO_MISSED_DEAD = 50
EMULATION_TOML = f"[routing]\nhello_missed_dead = {EMULATION_HELLO_MISSED_DEAD}\n"
EMULATION_CONFIG = {"x0node/config.local.toml": EMULATION_TOML.encode()}
# A counted ping passes once in up to this many rounds: one round may still meet a flap on a loaded host.
PING_ROUNDS = 3


def ping_cmd(addr: str, converge_s: int, pre: str = "") -> str:
    """Shell for: wait (bounded) for the first reply, then counted pings of 3 until one round loses
    nothing (at most PING_ROUNDS); the last round's output is what is printed."""
    return (f"for i in $(seq 1 {converge_s}); do {pre}ping -6 -c 1 -W 1 {addr} >/dev/null 2>&1 && break; sleep 1; done; "
            f"for r in $(seq 1 {PING_ROUNDS}); do out=$({pre}ping -6 -c 3 -W 2 {addr}); "
            f"case \"$out\" in *' 0% packet loss'*) break;; esac; sleep 2; done; echo \"$out\"")


# named to sort after the image's x0-watchdog.conf: drop-ins apply in file name order, the last one wins
LAB_WATCHDOG = "/run/systemd/system/x0node.service.d/zz-lab-tcg.conf"


def boot_lab_vm(vm: VM, timeout_s: float, prompt: str = r"root@x0[^\n]*# ",
                start: bool = True) -> tuple[str, str, float]:
    """Start `vm` (unless started already), wait for the debug console, then for x0node ready; returns wait_ready's tuple.

    x0node's systemd watchdog (30 s, rootfs x0-watchdog.conf) is sized for a device; a TCG guest on a
    loaded 2-core build host can need longer than that to import and start the daemon, and is then killed
    and restarted in a loop. The lab VM gets a runtime drop-in (/run, gone at the next boot) with a longer
    watchdog before the daemon is (re)started; nothing on the image changes."""
    if start:
        vm.start()
    vm.wait_for(prompt, timeout_s)
    since = vm.mark()
    rc, out = vm.shell(f"mkdir -p {LAB_WATCHDOG.rsplit('/', 1)[0]} && printf '[Service]\\nWatchdogSec=600s\\n' > "
                       f"{LAB_WATCHDOG} && systemctl daemon-reload && systemctl reset-failed x0node; "
                       "systemctl is-active -q x0node || systemctl restart --no-block x0node; echo LAB-OK", timeout_s=120)
    assert "LAB-OK" in out, out
    try:
        return vm.wait_ready(30, 0)  # ready before the drop-in
    except TimeoutError:
        return vm.wait_ready(timeout_s, since)


def nft_packets(out: str) -> int:
    """Packets of the counter in `nft -j list counter ...` output, found by its own line (a daemon log line
    on the shared console may come before or after it)."""
    nft_json = next(line for line in out.splitlines() if line.startswith('{"nftables"'))
    return next(o["counter"]["packets"] for o in json.loads(nft_json)["nftables"] if "counter" in o)


def manifest(ctx: pipeline.Context) -> dict:
    return json.loads((ctx.out / "manifest.json").read_text())
