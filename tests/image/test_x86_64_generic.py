"""The generic x86_64 board (board-configs/x86_64-generic.toml): one image that boots on legacy BIOS
(SeaBIOS, GRUB i386-pc from the BIOS boot partition) and on UEFI (OVMF, GRUB on the ESP), from AHCI,
NVMe and USB storage, meshes over e1000e NICs and over an SAE-secured 802.11s mesh of mac80211_hwsim
radios.

The matrix, chosen so that every cell is proven once and no boot is spent twice (TCG is slow):

| cell | firmware | disk | runs to | used by |
|---|---|---|---|---|
| bios-ahci, bios-usb, uefi-nvme, uefi-usb | as named | as named | systemd up (the debug console's prompt), then one look and the VM is stopped; two at a time | test_storage_and_firmware_cell |
| uefi-ahci | OVMF | AHCI | x0node ready, e1000e mesh port, 3 hwsim radios later | test_e1000e_mesh, test_sae_mesh_of_hwsim_radios |
| bios-nvme | SeaBIOS | NVMe | x0node ready, e1000e mesh port | test_e1000e_mesh |

A short cell proves the chain firmware → GRUB (its `booting slot A` line on the serial console) →
kernel + initramfs → root slot mounted (squashfs, from the partition named rootA on the disk of that
bus) → systemd up (PID 1, the console getty it started); the firmware is what the guest sees
(/sys/firmware/efi or not). The two mesh VMs boot together and go on to x0node ready; they share the
e1000e link, and the UEFI one then carries the Wi-Fi test. Each cell's times (QEMU start → GRUB line →
prompt → ready) are written to test-artifacts/x86_64-generic-cells.json.

Measured (2 cores, TCG; seconds from QEMU start to the prompt, at a load average of 2-4 / 27-55 from
other jobs), one at a time: bios-ahci 52 / 245, bios-usb 63 / 272, uefi-nvme 54 / 210, uefi-usb 82 / 386
(4.4 / 18.5 min for the four); two at a time, quiet: 78, 88, 82, 84 (3.1 min for the four with their
provisioning); the pair, booting together, prompt 89 / 66 and x0node ready 141 / 119 quiet (uefi-ahci / bios-nvme), the pair with the e1000e and Wi-Fi tests 4.4 / 12 min docs/image.md, "Tests and figures", has the
table.
"""

from __future__ import annotations

import concurrent.futures
import errno
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import pytest

from image import provision
from image.assemble import BIOS_BOOT_FIRST_LBA, BIOS_BOOT_LAST_LBA, GPT_TYPE_BIOS_BOOT
from image.qemu import VM, MeshLink
from tests.conftest import ARTIFACTS
from tests.image.conftest import (
    BOOT_TIMEOUT_S,
    EMULATION_CONFIG,
    EMULATION_TOML,
    VMFactory,
    boot_lab_vm,
    built,
    daemon_present,
    manifest,
    nft_packets,
    ping_cmd,
)

BOARD = "x86_64-generic"
OVMF = "/usr/share/ovmf/OVMF.fd"
PROMPT = re.compile(r"root@x0[^\n]*# ")
GRUB_LINE = re.compile(r"x0tta6bl4: booting slot A")
MIB = 1024 * 1024
# Bound on waiting for a mesh condition (a neighbour, a route, the daemon's interface list): TCG guests on
# a loaded host take minutes where a device takes seconds; it bounds a hang, it measures nothing.
CONVERGE_S = 600
# name: (firmware, disk interface, fragment of the sysfs path of the disk the root slot was mounted from)
SHORT_CELLS = {"bios-ahci": ("seabios", "ahci", "/ata"), "bios-usb": ("seabios", "usb", "/usb"),
               "uefi-nvme": (OVMF, "nvme", "/nvme0n1p2"), "uefi-usb": (OVMF, "usb", "/usb")}
# Root device, its file system and partition name, where it hangs in sysfs, what PID 1 is, the firmware.
FACTS = ("test -d /sys/firmware/efi && echo FW=UEFI || echo FW=BIOS; echo PID1=$(readlink /proc/1/exe); "
         "src=$(findmnt -no SOURCE /); b=${src#/dev/}; "
         "echo ROOT=$src $(findmnt -no FSTYPE /) $(sed -n s/^PARTNAME=//p /sys/class/block/$b/uevent); "
         "readlink -f /sys/class/block/$b")
MESH_KEY = b"x0-lab-mesh-key-2718\n"
WRONG_KEY = b"not-the-mesh-key-3141\n"
NS = {"b": "x0wb", "c": "x0wc"}
RADIO = {"b": "wlan1", "c": "wlan2"}


@dataclass
class Cell:
    """One boot of the matrix: how far it got and when (seconds since QEMU started)."""

    name: str
    firmware: str
    disk: str
    grub_s: float | None = None
    prompt_s: float | None = None
    ready_s: float | None = None
    facts: str = ""
    error: str | None = None
    extra: dict = field(default_factory=dict)


def _since_start(vm: VM) -> float:
    return round(time.monotonic() - vm.started_at, 1)


def _boot_to_prompt(vm: VM, cell: Cell, timeout_s: float = BOOT_TIMEOUT_S[BOARD]) -> None:
    vm.wait_for(GRUB_LINE, timeout_s)
    cell.grub_s = _since_start(vm)
    vm.wait_for(PROMPT, timeout_s)
    cell.prompt_s = _since_start(vm)


def _facts(vm: VM) -> str:
    rc, out = vm.shell(FACTS, timeout_s=120)
    assert rc == 0, out
    return out


def _record(cells: list[Cell]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "x86_64-generic-cells.json").write_text(json.dumps([asdict(c) for c in cells], indent=1) + "\n")


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory, anchor) -> Iterator[VMFactory]:
    vms = VMFactory(tmp_path_factory.mktemp("generic"), anchor)
    try:
        yield vms
    finally:
        vms.stop_all()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for vm in vms.vms:
            if vm.serial_log.exists():
                shutil.copyfile(vm.serial_log, ARTIFACTS / f"{BOARD}-{vm.vmdir.name}-serial.log")


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    """Every cell's record, written to test-artifacts as the module goes."""
    return []


@pytest.fixture(scope="module")
def short_cells(factory: VMFactory, cells: list[Cell]) -> dict[str, Cell]:
    """The four short cells, two VMs at a time (one per core; the disks are provisioned one after the
    other first): boot to systemd, one look, stop."""
    made = {}
    for name, (firmware, disk, _) in SHORT_CELLS.items():
        vm, _ = factory.make(BOARD, name, firmware=firmware, disk_interface=disk)  # eth0 only
        made[name] = (Cell(name, "SeaBIOS" if firmware == "seabios" else "OVMF", disk), vm)

    def boot(name: str) -> Cell:
        cell, vm = made[name]
        try:
            vm.start()
            _boot_to_prompt(vm, cell, BOOT_TIMEOUT_S[BOARD] * 2)  # two VMs share the cores
            cell.facts = _facts(vm)
        except (TimeoutError, RuntimeError, AssertionError) as exc:
            cell.error = str(exc)
        finally:
            vm.stop()
        return cell

    out: dict[str, Cell] = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for cell in pool.map(boot, list(made)):
            out[cell.name] = cell
            cells.append(cell)
            _record(cells)
    return out


def test_one_image_for_bios_and_uefi() -> None:
    ctx = built(BOARD)
    m = manifest(ctx)
    assert m["board"] == BOARD and m["kernel_version"].endswith("-amd64"), m["kernel_version"]
    assert ctx.disk.stat().st_size <= ctx.board.disk_limit_mib * MIB
    assert ctx.squashfs.stat().st_size <= ctx.board.squashfs_limit_mib * MIB
    table = json.loads(subprocess.run(["sfdisk", "--json", str(ctx.disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    names = [p.get("name") for p in table["partitions"]]
    assert names == ["esp", "rootA", "rootB", "data", "bios"], names
    bios = table["partitions"][4]
    assert bios["type"] == GPT_TYPE_BIOS_BOOT and bios["start"] == BIOS_BOOT_FIRST_LBA
    assert bios["start"] + bios["size"] - 1 == BIOS_BOOT_LAST_LBA
    with open(ctx.disk, "rb") as f:
        mbr = f.read(512)
        f.seek(BIOS_BOOT_FIRST_LBA * 512)
        core = f.read(512)
    assert mbr[510:] == b"\x55\xaa" and mbr[0x1C2] == 0xEE  # protective MBR kept
    assert int.from_bytes(mbr[0x5C:0x64], "little") == BIOS_BOOT_FIRST_LBA  # boot.img -> core.img
    assert int.from_bytes(core[500:508], "little") == BIOS_BOOT_FIRST_LBA + 1  # core.img's block list
    # the generic kernel carries the drivers real boxes need
    mods = {p.name.split(".ko")[0].replace("-", "_") for p in (ctx.rootfs / "usr/lib/modules" / m["kernel_version"]).rglob("*.ko*")}
    for needed in ("ahci", "nvme", "usb_storage", "uas", "e1000e", "igb", "r8169", "ath9k", "mac80211_hwsim"):
        assert needed in mods, needed


@pytest.mark.parametrize("name", list(SHORT_CELLS))
def test_storage_and_firmware_cell(short_cells: dict[str, Cell], name: str) -> None:
    """firmware → GRUB → kernel → root slot mounted from the named bus → systemd up."""
    cell = short_cells[name]
    firmware, _, where = SHORT_CELLS[name]
    assert cell.error is None, f"{name}: {cell.error}"
    facts = cell.facts
    assert ("FW=BIOS" if firmware == "seabios" else "FW=UEFI") in facts, facts
    assert "PID1=/usr/lib/systemd/systemd" in facts, facts
    root = re.search(r"ROOT=(\S+) (\S+) (\S+)", facts)
    assert root and root.group(2) == "squashfs" and root.group(3) == "rootA", facts
    assert where in facts, facts


# --- the two full boots: e1000e mesh, then the 802.11s test on the UEFI one ---------------------------

@dataclass
class Pair:
    uefi: VM
    bios: VM
    ids: dict[str, provision.Identity]
    nodes: dict[str, provision.Identity]  # the Wi-Fi test's namespace nodes b and c


def _node_config(name: str) -> bytes:
    return (f'[node]\ndata_dir = "/data/wifitest/{name}"\ninterfaces = ["{RADIO[name]}"]\n'
            f'log_level = "info"\n\n{EMULATION_TOML}').encode()


@pytest.fixture(scope="module")
def pair(factory: VMFactory, cells: list[Cell], anchor, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """UEFI + AHCI and SeaBIOS + NVMe, joined by one e1000e link, both booted to x0node ready. The UEFI
    one also carries the Wi-Fi test's files: the mesh key, a wrong key, and two namespace nodes' keys."""
    if not daemon_present():
        pytest.skip("the daemon (`x0node run`) is not in this tree")
    extra: dict[str, bytes] = {"wifitest/wrong.key": WRONG_KEY, **EMULATION_CONFIG}
    nodes = {}
    for name in ("b", "c"):
        work = tmp_path_factory.mktemp(f"wifi-{name}")
        nodes[name] = provision.make_identity(anchor, work)
        for fname, content in (("node.key", nodes[name].key), ("node.cert", nodes[name].cert),
                               ("anchor.pub", provision.anchor_pub(anchor).read_bytes()),
                               ("config.toml", _node_config(name))):
            extra[f"wifitest/{name}/{fname}"] = content
    link1, link2 = MeshLink.pair("52:54:00:00:65:01", "52:54:00:00:65:02")
    uefi, id_uefi = factory.make(BOARD, "uefi-ahci", firmware=OVMF, disk_interface="ahci", extra=extra,
                                 wifi_mesh_key=MESH_KEY, memory_mib=1536,
                                 mesh_links=[link1])
    bios, id_bios = factory.make(BOARD, "bios-nvme", firmware="seabios", disk_interface="nvme",
                                 extra=EMULATION_CONFIG, mesh_links=[link2])
    uefi.start()
    bios.start()

    def boot(name: str, vm: VM, ident: provision.Identity) -> Cell:
        cell = Cell(name, "OVMF" if vm is uefi else "SeaBIOS", vm.disk_interface or "", extra={"booted_with_peer": True})
        try:
            _boot_to_prompt(vm, cell, BOOT_TIMEOUT_S[BOARD] * 2)  # two VMs share the cores
            node_id, _, ready_s = boot_lab_vm(vm, BOOT_TIMEOUT_S[BOARD] * 2, start=False)
            cell.ready_s = round(ready_s, 1)
            # (the mesh address is derived from the node id; on a busy console the ready line's last word
            # can run into the echo of a typed command, so only the id is compared here)
            assert node_id == ident.node_id, (node_id, ident.node_id)
            cell.facts = _facts(vm)
        except (TimeoutError, RuntimeError, AssertionError) as exc:
            cell.error = str(exc)
        return cell

    # one thread per VM, so each VM's times are taken when its own console shows them
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        booted = list(pool.map(boot, ("uefi-ahci", "bios-nvme"), (uefi, bios), (id_uefi, id_bios)))
    cells.extend(booted)
    _record(cells)
    for cell in booted:
        assert cell.error is None, f"{cell.name}: {cell.error}"
    return Pair(uefi, bios, {"uefi": id_uefi, "bios": id_bios}, nodes)


def _status(vm: VM, data_dir: str, ns: str | None = None, may_fail: bool = False) -> list | None:
    """[node_id, ifname, state, throughput_source, throughput_bps] per neighbour from `x0node status`."""
    pre = f"ip netns exec {ns} " if ns else ""
    rc, out = vm.shell(f"{pre}x0node status --data-dir {data_dir} --json > /run/st.json; "
                       "python3 -I -c 'import json; d=json.load(open(\"/run/st.json\")); "
                       "print(json.dumps([[n[\"node_id\"], n[\"ifname\"], n[\"state\"], n[\"throughput_source\"], "
                       "n[\"throughput_bps\"]] for n in d[\"neighbours\"]]))'", timeout_s=90)
    if rc != 0 and may_fail:  # the daemon is (re)starting: its status socket is not up yet
        return None
    assert rc == 0, out
    # the list's own line: the daemon's journal shares the console and can print among the output,
    # even inside a line (then the poll asks again)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() == "[]" or ln.strip().startswith("[[")]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        if may_fail:
            return None
        raise AssertionError(f"no neighbour list in: {out}") from None


def _wait_neighbour(vm: VM, data_dir: str, node_id: str, ns: str | None = None,
                    ok: Callable[[list], bool] = lambda n: True, what: str = "") -> list:
    """`x0node status`'s neighbours once `node_id` is up on it and its entry satisfies `ok`; polled, so
    a daemon that is restarting or still starting its services is simply asked again."""
    last: list = []
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        last = _status(vm, data_dir, ns, may_fail=True) or []
        if any(n[0] == node_id and n[2] == "up" and ok(n) for n in last):
            return last
        vm.shell("sleep 5", timeout_s=60)
    raise AssertionError(f"{node_id} never became a neighbour{what} in {CONVERGE_S} s: {last}")


def _wait_shell(vm: VM, command: str, done: Callable[[int, str], bool], what: str) -> str:
    """Run `command` on the console until `done(rc, out)`, within CONVERGE_S."""
    deadline = time.monotonic() + CONVERGE_S
    rc, out = -1, ""
    while time.monotonic() < deadline:
        rc, out = vm.shell(command, timeout_s=60)
        if done(rc, out):
            return out
        vm.shell("sleep 3", timeout_s=60)
    raise AssertionError(f"{what} not seen in {CONVERGE_S} s: rc={rc} {out}")


def _wait_status(vm: VM, data_dir: str, ns: str | None = None) -> list:
    """`x0node status`'s neighbours, asked again while the daemon's status socket is not up."""
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        seen = _status(vm, data_dir, ns, may_fail=True)
        if seen is not None:
            return seen
        vm.shell("sleep 5", timeout_s=60)
    raise AssertionError(f"no daemon answered on {data_dir} in {CONVERGE_S} s")


def _ping(vm: VM, addr: str, ns: str | None = None) -> None:
    pre = f"ip netns exec {ns} " if ns else ""
    rc, out = vm.shell(ping_cmd(addr, 60, pre), timeout_s=180)
    assert rc == 0 and " 0% packet loss" in out, out


def _connect_cmd(addr: str, port: int) -> str:
    """Prints connect()'s errno: 0 connected, 111 refused, 11 (EAGAIN) no answer within 5 s."""
    return ("python3 -I -c 'import socket,sys; s=socket.socket(socket.AF_INET6); s.settimeout(5); "
            f"print(s.connect_ex((sys.argv[1], int(sys.argv[2]))))' {addr} {port}")


def test_e1000e_mesh(pair: Pair) -> None:
    """Two full boots (OVMF + AHCI, SeaBIOS + NVMe) on one e1000e link: x0node neighbours over eth1, a
    route of x0node's (protocol 78) to the other's mesh address through eth1, pings both ways through
    the firewall (eth1 the mesh port, eth0 the LAN port). The web UI is not reachable from the mesh: a
    connection from one node to the other's mesh address on the UI's port is dropped and counted
    (regression for the exposure finding), though the UI does listen there."""
    facts = {"uefi": _facts(pair.uefi), "bios": _facts(pair.bios)}
    assert "FW=UEFI" in facts["uefi"] and "/ata" in facts["uefi"], facts
    assert "FW=BIOS" in facts["bios"] and "/nvme0n1p2" in facts["bios"], facts
    for vm in (pair.uefi, pair.bios):
        rc, out = vm.shell("basename $(readlink -f /sys/class/net/eth1/device/driver)")
        assert rc == 0 and "e1000e" in out, out
    for side, other in (("uefi", "bios"), ("bios", "uefi")):
        vm = getattr(pair, side)
        seen = _wait_neighbour(vm, "/data/x0node", pair.ids[other].node_id)
        entry = next(n for n in seen if n[0] == pair.ids[other].node_id)
        assert entry[1] == "eth1", seen
        _ping(vm, pair.ids[other].mesh_addr)
        _wait_shell(vm, f"ip -6 route show table all proto 78 | grep -F '{pair.ids[other].mesh_addr}'",
                    lambda rc, out: rc == 0 and "dev eth1" in out, f"x0node's route to {other} over eth1")
    # (grep on the device: a long file read back over a loaded serial console can come back garbled)
    rc, out = pair.uefi.shell("grep -q 'iifname \"eth1\" goto mesh' /run/x0node/firewall.nft && "
                              "grep -q 'iifname \"eth0\" goto lan' /run/x0node/firewall.nft && echo ROLES-OK")
    assert rc == 0 and "ROLES-OK" in out, out
    # the UI over the mesh: the listener is there (dual-stack on ::, port 443) but the firewall drops it
    rc, out = pair.uefi.shell("nft -j list counter inet x0tta6bl4 drop_mesh")
    before = nft_packets(out)
    rc, out = pair.bios.shell(_connect_cmd(pair.ids["uefi"].mesh_addr, 443), timeout_s=60)
    # timed out: dropped, not refused (111); matched as a whole line, as a daemon log line may share the output
    assert re.search(rf"^{errno.EAGAIN}$", out, re.M), out
    rc, out = pair.uefi.shell("nft -j list counter inet x0tta6bl4 drop_mesh")
    assert nft_packets(out) > before, out
    rc, out = pair.uefi.shell("ss -Htln 'sport = :443'")
    assert rc == 0 and ":443" in out, out  # the UI does listen; only the firewall keeps the mesh out


def _plinks(vm: VM, ifname: str, ns: str | None = None) -> dict[str, str]:
    """{peer MAC: mesh plink state} from `iw dev <if> station dump`."""
    pre = f"ip netns exec {ns} " if ns else ""
    rc, out = vm.shell(f"{pre}iw dev {ifname} station dump | grep -E '^Station|mesh plink:'", timeout_s=60)
    peers, mac = {}, None
    for line in out.splitlines():
        m = re.match(r"Station ([0-9a-f:]{17})", line.strip())
        if m:
            mac = m.group(1)
        elif "mesh plink:" in line and mac:
            peers[mac] = line.split(":", 1)[1].strip()
    return peers


def test_sae_mesh_of_hwsim_radios(pair: Pair) -> None:
    """An SAE-secured 802.11s mesh of mac80211_hwsim radios inside the UEFI VM (the guest loads the
    module; the build host cannot).

    The device itself, provisioned with the mesh key: its udev rule and x0-wifi-mesh@wlan0.service join
    wlan0 to the mesh with wpa_supplicant (rootfs/usr/lib/x0tta6bl4/wifimesh.py) and restart x0node with
    wlan0 as a mesh interface. Two more radios are moved into network namespaces of the guest: node B
    runs the same wifimesh.py with the same key, node C with a wrong key; each runs its own x0node with a
    certificate from the same trust anchor. Checked: A and B peer (mesh plink ESTAB) and become x0node
    neighbours whose throughput comes from the kernel (nl80211 station data, x0node/io/linkrate.py), A
    reaches B's mesh address over the route x0node installed and back; C is never admitted: no
    established peer link with anyone, no x0node neighbour, no route.

    Every step waits on its condition (CONVERGE_S bounds a hang): the device's daemon is restarted
    whenever its radios change, and on a slow guest a neighbour can be up before the first kernel
    reading of its link, while its rate is still the probe trains' (the core's rule: the kernel's
    figure replaces the probe's when the adapter reads it, throughput.py)."""
    vm, ident_a, nodes = pair.uefi, pair.ids["uefi"], pair.nodes
    # Radios 1 and 2 belong to the namespace nodes: the device's own unit leaves them alone.
    rc, out = vm.shell("systemctl mask --runtime x0-wifi-mesh@wlan1.service x0-wifi-mesh@wlan2.service && "
                       "modprobe mac80211_hwsim radios=3 && udevadm settle -t 60 && ls /sys/class/net", timeout_s=120)
    assert rc == 0 and "wlan2" in out, out
    for name in ("b", "c"):
        ns, radio = NS[name], RADIO[name]
        key = "/data/x0node/wifi-mesh.key" if name == "b" else "/data/wifitest/wrong.key"
        rc, out = vm.shell(
            f"chmod 700 /data/wifitest/{name} && ip netns add {ns} && "
            f"iw phy $(cat /sys/class/net/{radio}/phy80211/name) set netns name {ns} && "
            f"ip netns exec {ns} ip link set lo up && "
            f"(ip netns exec {ns} setsid python3 -I /usr/lib/x0tta6bl4/wifimesh.py run {radio} --key-file {key} "
            f"--run-dir /run/{ns} > /run/{ns}-wpa.log 2>&1 &) && "
            f"(ip netns exec {ns} setsid x0node run --config /data/wifitest/{name}/config.toml "
            f"> /run/{ns}-node.log 2>&1 &) && echo STARTED", timeout_s=60)
        assert rc == 0 and "STARTED" in out, out
    # wlan1 and wlan2 left the device's namespace: x0node's interface list follows (what the unit does
    # whenever a radio comes or goes). The restart is asynchronous (systemctl --no-block) and the running
    # config exists only while the daemon runs, so wait until it lists exactly the device's ports.
    rc, out = vm.shell("python3 -I /usr/lib/x0tta6bl4/wifimesh.py sync; systemctl is-active x0-wifi-mesh@wlan0",
                       timeout_s=60)
    assert "active" in out, out
    _wait_shell(vm, "grep -h '^interfaces' /run/x0node/config.toml; systemctl is-active x0node",
                lambda rc, out: 'interfaces = ["eth1", "wlan0"]' in out and "\nactive" in f"\n{out}",
                "x0node running on eth1 and wlan0 only")

    # A and B: a secured peer link, x0node neighbours with the kernel's station rate, routes both ways.
    _wait_neighbour(vm, "/data/x0node", nodes["b"].node_id, ok=lambda n: n[1] == "wlan0" and n[3] == "kernel"
                    and n[4] > 0, what=" on wlan0 with the kernel's link rate")
    _wait_neighbour(vm, "/data/wifitest/b", ident_a.node_id, NS["b"], ok=lambda n: n[1] == RADIO["b"],
                    what=f" of B on {RADIO['b']}")
    macs = {}
    for name in ("b", "c"):
        rc, out = vm.shell(f"ip netns exec {NS[name]} cat /sys/class/net/{RADIO[name]}/address")
        assert rc == 0, out
        macs[name] = out.strip().splitlines()[-1]
    peers = _plinks(vm, "wlan0")
    assert peers.get(macs["b"]) == "ESTAB", peers
    rc, out = vm.shell("iw dev wlan0 info; grep -E 'key_mgmt|ieee80211w|mesh_fwding' /run/x0-wifi-mesh/wlan0/wlan0.conf")
    assert "type mesh point" in out and "key_mgmt=SAE" in out, out
    _ping(vm, nodes["b"].mesh_addr)
    _ping(vm, ident_a.mesh_addr, NS["b"])
    _wait_shell(vm, f"ip -6 route show table all proto 78 | grep -F '{nodes['b'].mesh_addr}'",
                lambda rc, out: rc == 0 and "dev wlan0" in out, "x0node's route to B over wlan0")

    # C (wrong key): never admitted, though it had as long as B to join.
    assert peers.get(macs["c"]) != "ESTAB", peers
    c_peers = _plinks(vm, RADIO["c"], NS["c"])
    assert "ESTAB" not in c_peers.values(), c_peers
    c_sees = _wait_status(vm, "/data/wifitest/c", NS["c"])
    assert c_sees == [], f"C has a neighbour: {c_sees}"
    a_now = _wait_status(vm, "/data/x0node")
    assert not any(n[0] == nodes["c"].node_id for n in a_now), a_now
    rc, out = vm.shell(f"ip -6 route show table all proto 78 > /run/r78 && ! grep -F '{nodes['c'].mesh_addr}' /run/r78")
    assert rc == 0, f"A has a route to C: {out}"
    rc, out = vm.shell(f"ip netns exec {NS['c']} ping -6 -c 2 -W 2 {ident_a.mesh_addr}", timeout_s=60)
    assert rc != 0, out
