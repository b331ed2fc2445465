"""Boot a built image in QEMU: headless, TCG (KVM is not used), serial console to a log file and a
unix socket, the web UI forwarded to a free port on 127.0.0.1, optional mesh links (UDP tunnels).

The first NIC (eth0) is the LAN/management port (QEMU user networking: the guest is a DHCP client of
QEMU's built-in server) with the UI's HTTPS port (443), its HTTP redirect port (80) and, for tests, the
routing port (UDP) forwarded from 127.0.0.1; mesh links are the following NICs (eth1, ...). The boot
disk hangs off virtio, AHCI, NVMe or USB storage and the firmware is the board's (OVMF, AAVMF) or SeaBIOS,
as the board's [qemu] section or the VM's overrides say.

    python -m image.qemu --board x86_64     # what `make qemu` runs; Ctrl-C stops the VM

Rules: host ports are picked free and bound to 127.0.0.1 only; every VM writes under its own directory;
`VM.stop()` kills only the QEMU process this object started (by pid). Waiting reads the serial log and
is bounded by a timeout. Console commands (lab/test units provisioned with a debug console) are framed
by unique markers so interleaved kernel or daemon output cannot be mistaken for a result.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from image.board import REPO_ROOT, Board, load_board

WEB_PORT = 443        # HTTPS (config.toml.in: web.port)
HTTP_PORT = 80        # redirects to HTTPS (web.http_port)
MESH_UDP_PORT = 6717  # x0node.proto.protocol.MESH_UDP_PORT; forwarded so tests can probe the LAN side
CONSOLE_CHUNK_BYTES = 8
CONSOLE_CHUNK_PAUSE_S = 0.03
READY_RE = re.compile(r"x0node ready node_id=(\S+) mesh_addr=(\S+)")
CERT_RE = re.compile(r"x0tta6bl4 web UI certificate SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A virtio NIC reports no link speed unless given one; a router's Ethernet port knows its own, and x0node
# takes an Ethernet port's rate from the kernel (x0node/io/linkrate.py). Without it the daemon measures
# the link with probe trains, which under TCG time the emulated CPU, not the link: two neighbours on
# the same port then get rates (and costs) minutes apart by a factor of several.
MESH_NIC_SPEED_MBPS = 1000
# A lab unit is emulated (TCG): on a loaded host its daemon is not scheduled for up to a second at a time,
# and the default dead interval (2.5 keepalives, 0.25 s) would flap its neighbours. Its neighbours allow
# it the same (image/run.py); failures still show within about a second. Its daemon can also stall for
# more than the 6 s steady watchdog (seen: killed by systemd right after ready at load 10, and the whole
# start over again): a lab unit's hang watchdog is 120 s.
LAB_HELLO_MISSED_DEAD = 10
LAB_WATCHDOG_S = 120
LAB_LOCAL_CONFIG = (f"[node]\nwatchdog_s = {LAB_WATCHDOG_S}\n\n"
                    f"[routing]\nhello_missed_dead = {LAB_HELLO_MISSED_DEAD}\n")
LAB_LOCAL_CONFIG_FILE = "x0node/config.local.toml"  # on /data: the run-time settings (daemon/config.py)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DIRECT_KERNEL = "direct-kernel"
EMULATED_CONSOLE = "ttyAMA0"  # QEMU virt's PL011


def direct_cmdline(board: Board, slot: str = "A") -> str:
    """The kernel command line of assemble.grub_cfg, on QEMU virt's console."""
    return (f"root=PARTLABEL=root{slot} rauc.slot={slot} ro console={EMULATED_CONSOLE},115200 panic=10 "
            f"{board.kernel_cmdline}")


def slot_boot_files(board: Board) -> tuple[pathlib.Path, pathlib.Path]:
    """The root slot's /boot/vmlinuz and /boot/initrd.img as the last build staged them, checked against
    the sha256 the image's manifest records for them."""
    import hashlib

    out = REPO_ROOT / "out" / board.name / "manifest.json"
    artefacts = json.loads(out.read_text())["artefacts"]
    boot = REPO_ROOT / "build" / "image" / board.name / "rootfs" / "boot"
    files = (boot / "vmlinuz", boot / "initrd.img")
    for f in files:
        if hashlib.sha256(f.read_bytes()).hexdigest() != artefacts[f.name]["sha256"]:
            raise RuntimeError(f"{f} is not the one in the built image (rebuild with `make image BOARD={board.name}`)")
    return files


def image_path(board: Board) -> pathlib.Path:
    manifest = REPO_ROOT / "out" / board.name / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"no image for {board.name}: run `make image BOARD={board.name}` first")
    return manifest.parent / json.loads(manifest.read_text())["image"]


@dataclass(frozen=True)
class MeshLink:
    """One end of a point-to-point Ethernet link between two VMs: a UDP tunnel over 127.0.0.1 (QEMU's
    `-netdev dgram`), each frame one datagram from this end's port to the other's.

    Connectionless on purpose: either VM can be powered off, cut or restarted and the link works again
    as soon as it is back, like a cable between two routers. (A `-netdev socket` listen/connect pair
    does not: the connecting end never reconnects, so a restart of the listening VM left the link dead
    for the other VM's life.) Frames sent while the other end is down are lost, as on a wire."""

    local_port: int
    remote_port: int
    mac: str

    @staticmethod
    def pair(mac_a: str, mac_b: str) -> tuple[MeshLink, MeshLink]:
        """Both ends of one link, on two free UDP ports of 127.0.0.1."""
        a, b = free_udp_port(), free_udp_port()
        while b == a:
            b = free_udp_port()
        return MeshLink(a, b, mac_a), MeshLink(b, a, mac_b)


@dataclass(frozen=True)
class TapLink:
    """A mesh port on a TAP device opened by the caller (QEMU gets the descriptor: `-netdev tap,fd=N`)."""

    fd: int
    mac: str


@dataclass
class VM:
    board: Board
    disk: pathlib.Path
    vmdir: pathlib.Path
    disk_format: str = "raw"
    mesh_links: list[MeshLink] = field(default_factory=list)
    firmware: str | None = None        # None: the board's; "seabios": QEMU's SeaBIOS (legacy BIOS)
    disk_interface: str | None = None  # None: the board's; virtio | ahci | nvme | usb
    memory_mib: int | None = None      # None: the board's
    # firmware "direct-kernel" (a board whose own boot firmware QEMU cannot run, e.g. rpi4 on `virt`): the
    # slot's kernel and initramfs are given to QEMU, with the command line GRUB would give them
    kernel: pathlib.Path | None = None
    initrd: pathlib.Path | None = None
    tap_links: list[TapLink] = field(default_factory=list)
    web_port: int = 0
    http_port: int = 0
    udp_port: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    _console: socket.socket | None = None
    _log_start: int = 0

    @property
    def serial_log(self) -> pathlib.Path:
        return self.vmdir / "serial.log"

    @property
    def serial_sock(self) -> pathlib.Path:
        return self.vmdir / "serial.sock"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def command(self) -> list[str]:
        q = self.board.qemu
        if q is None:
            raise ValueError(f"board {self.board.name} has no [qemu] section")
        firmware = self.firmware or q.firmware
        if firmware == "seabios":
            boot = []
        elif firmware == DIRECT_KERNEL:
            if self.kernel is None or self.initrd is None:
                raise ValueError(f"board {self.board.name} boots its kernel directly: give the VM kernel and initrd")
            boot = ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", direct_cmdline(self.board)]
        else:
            boot = ["-bios", firmware]
        cmd = [q.system, "-machine", q.machine, "-accel", "tcg", "-cpu", q.cpu, "-smp", "2",
               "-m", str(self.memory_mib or q.memory_mib), *boot,
               "-display", "none", "-nodefaults", "-no-user-config", "-monitor", "none",
               *self.disk_args(self.disk_interface or q.disk_interface),
               "-device", "virtio-rng-pci",
               "-chardev", f"socket,id=ser0,path={self.serial_sock},server=on,wait=off,logfile={self.serial_log},logappend=on",
               "-serial", "chardev:ser0",
               "-netdev", f"user,id=up,hostfwd=tcp:127.0.0.1:{self.web_port}-:{WEB_PORT},"
                          f"hostfwd=tcp:127.0.0.1:{self.http_port}-:{HTTP_PORT},"
                          f"hostfwd=udp:127.0.0.1:{self.udp_port}-:{MESH_UDP_PORT}",
               "-device", f"{q.nic_model},netdev=up"]
        speed = f",speed={MESH_NIC_SPEED_MBPS},duplex=full" if q.nic_model.startswith("virtio-net") else ""
        for i, link in enumerate(self.mesh_links):
            cmd += ["-netdev", f"dgram,id=mesh{i},local.type=inet,local.host=127.0.0.1,local.port={link.local_port},"
                               f"remote.type=inet,remote.host=127.0.0.1,remote.port={link.remote_port}",
                    "-device", f"{q.nic_model},netdev=mesh{i},mac={link.mac}{speed}"]
        for i, tap in enumerate(self.tap_links):
            cmd += ["-netdev", f"tap,id=tap{i},fd={tap.fd}",
                    "-device", f"{q.nic_model},netdev=tap{i},mac={tap.mac}{speed}"]
        return cmd

    def disk_args(self, kind: str) -> list[str]:
        """The boot disk on a virtio, AHCI (q35's SATA controller), NVMe or USB storage (xHCI) bus."""
        drive = f"file={self.disk},format={self.disk_format},cache=unsafe"
        if kind == "virtio":
            return ["-drive", f"{drive},if=virtio"]
        devices = {"ahci": ["-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0"],
                   "nvme": ["-device", "nvme,drive=d0,serial=x0boot,bootindex=0"],
                   "usb": ["-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=d0,bootindex=0"]}
        if kind not in devices:
            raise ValueError(f"unknown disk interface {kind!r}")
        return ["-drive", f"{drive},if=none,id=d0", *devices[kind]]

    def start(self) -> None:
        self.vmdir.mkdir(parents=True, exist_ok=True)
        self.serial_sock.unlink(missing_ok=True)
        if not self.web_port:
            self.web_port = free_port()
        if not self.http_port:
            self.http_port = free_port()
        if not self.udp_port:
            self.udp_port = free_port()
        with open(self.serial_log, "a") as f:
            f.write(f"\n=== boot at {time.strftime('%H:%M:%S')} ===\n")
        qlog = open(self.vmdir / "qemu.log", "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog,
                                     start_new_session=True, pass_fds=[t.fd for t in self.tap_links])
        qlog.close()
        self._log_start = self.serial_log.stat().st_size

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_text(self, since: int = 0) -> str:
        """Serial console output of this run (ANSI sequences and CRs removed), from character `since`."""
        data = self.serial_log.read_bytes()[self._log_start:]
        return ANSI_RE.sub("", data.decode("utf-8", "replace")).replace("\r", "")[since:]

    def mark(self) -> int:
        """A position in the console text; pass it as `since` to look only at what comes after."""
        return len(self.console_text())

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float, since: int = 0) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = regex.search(self.console_text(since))
            if match:
                return match
            if not self.running():
                raise RuntimeError(f"QEMU exited (rc={self.proc.returncode if self.proc else None}); see {self.vmdir}")
            time.sleep(0.2)
        raise TimeoutError(f"{regex.pattern!r} not seen on the serial console in {timeout_s:.0f} s "
                           f"(log: {self.serial_log})")

    def cert_fingerprint(self, timeout_s: float, since: int = 0) -> str:
        """The web UI certificate's SHA-256 fingerprint as the device prints it on the console."""
        return self.wait_for(CERT_RE, timeout_s, since).group(1)

    def wait_ready(self, timeout_s: float, since: int = 0) -> tuple[str, str, float]:
        """(node_id, mesh_addr, seconds since QEMU started) once the daemon's ready line appears."""
        match = self.wait_for(READY_RE, timeout_s, since)
        return match.group(1), match.group(2), time.monotonic() - self.started_at

    def send(self, text: str) -> None:
        """Type text on the serial console."""
        # The connection stays open for the VM's life: QEMU drops input still queued when a client leaves.
        # QEMU also sends the console output to this client; it is drained (the log file has it), else
        # a full socket buffer would stall the guest's UART.
        if self._console is None:
            self._console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._console.connect(str(self.serial_sock))
            threading.Thread(target=_drain, args=(self._console,), daemon=True).start()
        # Paced: the emulated UART takes input only as fast as the (slow, TCG) guest drains it, and
        # a burst larger than its FIFO can lose characters.
        data = text.encode()
        for i in range(0, len(data), CONSOLE_CHUNK_BYTES):
            self._console.sendall(data[i:i + CONSOLE_CHUNK_BYTES])
            time.sleep(CONSOLE_CHUNK_PAUSE_S)

    def shell(self, command: str, timeout_s: float = 60.0) -> tuple[int, str]:
        """Run a command on the debug console; returns (exit status, output)."""
        # The daemon's log shares this console and a line of it can land anywhere, even between a marker
        # and its newline. So the markers are typed split by quotes (the echoed command line never
        # contains them whole) and the begin marker is matched up to the end of its line, whatever
        # else that line carries.
        tag = secrets.token_hex(4)
        begin, end = f"X0B{tag}", f"X0E{tag}"
        since = self.mark()
        self.send("\n")
        time.sleep(0.3)
        self.send(f"echo X0B''{tag}; {command}; echo X0E''{tag}$?\n")
        match = self.wait_for(re.compile(rf"{begin}[^\n]*\n(.*?)\n?{end}(\d+)", re.S), timeout_s, since)
        return int(match.group(2)), match.group(1)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


LAB_DIR = REPO_ROOT / "build" / "qemu"


def lab_unit(board: Board, fresh: bool = False, lab_dir: pathlib.Path = LAB_DIR) -> tuple[pathlib.Path, pathlib.Path]:
    """(disk, trust anchor key) of the board's lab unit under `lab_dir`, made on first use.

    A lab unit is a copy of the built image provisioned with a node certificate from a lab trust anchor
    kept in `lab_dir` (made on first use), the debug console and the run-time setting an emulated unit
    needs (LAB_LOCAL_CONFIG). It is kept between runs, so the node key (and the UI's password) survive;
    `fresh`, a new image or a changed lab setting starts over."""
    image = image_path(board)
    vmdir = lab_dir / board.name
    vmdir.mkdir(parents=True, exist_ok=True)
    disk = vmdir / "disk.img"
    stamp = vmdir / "backing"
    anchor = lab_dir / "lab-anchor.key"
    made_from = f"{image}\n{LAB_LOCAL_CONFIG}"
    if fresh or not disk.exists() or not stamp.exists() or stamp.read_text() != made_from or not anchor.exists():
        from image import provision

        if not anchor.exists():
            provision.make_anchor(anchor)
        disk.unlink(missing_ok=True)
        subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
        ident = provision.provision(board, disk, anchor, debug_console=True,
                                    extra={LAB_LOCAL_CONFIG_FILE: LAB_LOCAL_CONFIG.encode()})
        print(f"provisioned lab unit: node_id={ident.node_id} mesh_addr={ident.mesh_addr}", flush=True)
        stamp.write_text(made_from)
    return disk, anchor


@dataclass(frozen=True)
class Ready:
    """What a user needs to open the UI of a booted VM."""

    node_id: str
    mesh_addr: str
    seconds: float          # QEMU start -> the daemon's ready line
    fingerprint: str
    setup_code: str | None  # None once a password is set


def wait_announce(vm: VM, timeout_s: float = 300.0) -> Ready:
    """Wait for the device's certificate and the daemon's ready line; print URL, setup code, fingerprint."""
    fingerprint = vm.cert_fingerprint(timeout_s)
    node_id, mesh_addr, secs = vm.wait_ready(timeout_s)
    print(f"x0node ready after {secs:.0f} s: node_id={node_id} mesh_addr={mesh_addr}", flush=True)
    code = re.search(r"setup code (\S+)", vm.console_text())
    if code:
        print(f"web UI setup code: {code.group(1)}", flush=True)
    print(f"web UI certificate SHA-256 fingerprint (compare with the browser's): {fingerprint}", flush=True)
    print(f"open {vm.url} ; the certificate is this device's own (self-signed): accept it if the "
          "fingerprints match", flush=True)
    return Ready(node_id, mesh_addr, secs, fingerprint, code.group(1) if code else None)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C (KeyboardInterrupt), so `finally` cleans up."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def ignore_signals() -> None:
    """During cleanup: a second Ctrl-C or SIGTERM must not cut it short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.qemu", description="Boot a built image in QEMU (TCG).")
    parser.add_argument("--board", default="x86_64")
    parser.add_argument("--port", type=int, default=0, help="host port for the web UI's HTTPS (default: a free one)")
    parser.add_argument("--fresh", action="store_true", help="start from the pristine image (new node key)")
    args = parser.parse_args(argv)
    stop_on_signals()
    board = load_board(args.board)
    disk, _ = lab_unit(board, args.fresh)
    kernel = initrd = None
    if board.qemu is not None and board.qemu.firmware == DIRECT_KERNEL:
        kernel, initrd = slot_boot_files(board)
    vm = VM(board=board, disk=disk, vmdir=disk.parent, web_port=args.port, kernel=kernel, initrd=initrd)
    try:
        vm.start()
        print(f"{board.name}: booting {image_path(board).name} under TCG; serial log {vm.serial_log}", flush=True)
        print(f"web UI (once x0node is ready): {vm.url} (HTTPS; {vm.http_url} redirects to the device's port 443)",
              flush=True)
        try:
            wait_announce(vm)
            print("Ctrl-C stops the VM", flush=True)
        except TimeoutError as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)
        while vm.running():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ignore_signals()
        vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
