"""The overlay's two datapaths inside one router (run on the device: a booted image, see bench/overlay.py
--guest and tests/image/test_overlay_esp.py; also runs on any Linux host with x0node importable).

    python3 overlay_guest.py [--seconds 5] [--modes clear,esp,userspace]

Builds a line of four network namespaces n1-n2-n3-n4 (veths, static routes; n2 and n3 forward), runs
the daemon's end-to-end datapath (x0node.overlay.datapath.E2EDatapath, the real handshake, the real
kernel setup and, with `esp = "auto"`, the kernel ESP adapter) in n1 and n4, and measures TCP from n1's
mesh address to n4's: clear (no overlay), esp (kernel ESP, when the kernel has it) and userspace
(`esp = "off"`). Then it captures on n2's link to n3 while a marker payload crosses, with AF_PACKET (the
image has no tcpdump). Prints a table and, last, one JSON object. Cleans up its namespaces and
processes (by PID) on exit. Traffic stays inside the namespaces it made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, "/usr/lib/x0node")  # the image's package directory; harmless elsewhere

MARKER = b"X0-ESP-CAPTURE-MARKER-"
PORT = 7001
SEEDS = {1: 11, 4: 14}
ANCHOR_SEED = bytes(range(32))
NS = f"x0g{os.getpid() % 100000}"


def sh(*cmd: str, ns: int | None = None, check: bool = True) -> str:
    full = ["ip", "netns", "exec", f"{NS}n{ns}", *cmd] if ns else list(cmd)
    r = subprocess.run(full, capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(full)}: {r.stderr.strip()}")
    return r.stdout


def identities():
    from x0node.proto.identity import Identity
    from x0node.proto.trust import TrustAnchor

    anchor = TrustAnchor.from_seed(ANCHOR_SEED)
    out = {}
    for n, seed in SEEDS.items():
        ident = Identity.from_seed(bytes([seed]) * 32)
        out[n] = ident.with_certificate(anchor.certify(ident.public_key))
    return anchor, out


def build_line(addrs: dict[int, str]) -> None:
    for n in (1, 2, 3, 4):
        sh("ip", "netns", "add", f"{NS}n{n}")
        sh("ip", "link", "set", "lo", "up", ns=n)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=n)
    for a, b in ((1, 2), (2, 3), (3, 4)):
        sh("ip", "link", "add", f"{NS}a", "type", "veth", "peer", "name", f"{NS}b")
        sh("ip", "link", "set", f"{NS}a", "netns", f"{NS}n{a}", "name", f"v{a}{b}")
        sh("ip", "link", "set", f"{NS}b", "netns", f"{NS}n{b}", "name", f"v{b}{a}")
        for x, y in ((a, b), (b, a)):
            sh("ip", "-6", "addr", "add", f"fd00:{a}{b}::{x}/64", "dev", f"v{x}{y}", "nodad", ns=x)
            sh("ip", "link", "set", f"v{x}{y}", "up", ns=x)
    for n in (1, 4):
        sh("ip", "-6", "addr", "add", f"{addrs[n]}/128", "dev", "lo", "nodad", ns=n)
    a1, a4 = addrs[1], addrs[4]
    for ns, dst, via in ((1, a4, "fd00:12::2"), (2, a4, "fd00:23::3"), (3, a4, "fd00:34::4"),
                         (4, a1, "fd00:34::3"), (3, a1, "fd00:23::2"), (2, a1, "fd00:12::1")):
        sh("ip", "-6", "route", "add", f"{dst}/128", "via", via, ns=ns)


def teardown() -> None:
    for n in (1, 2, 3, 4):
        subprocess.run(["ip", "netns", "del", f"{NS}n{n}"], capture_output=True)


# --- one end node's datapath (a child process in its namespace) -----------------------------------------

async def run_node(n: int, esp: str, status_path: str, cipher: str = "auto") -> None:
    from x0node.overlay.datapath import E2EDatapath
    from x0node.overlay.service import validate_config
    from x0node.proto.trust import TrustStore

    anchor, ids = identities()
    cfg = {**validate_config({"esp": esp, "cipher": cipher}), "exempt_tcp_port": None}
    dp = E2EDatapath(ids[n], TrustStore(anchors=[anchor.public_key]), cfg, 254, 99)
    await dp.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            tmp = status_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(dp.status(), f)
            os.replace(tmp, status_path)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await dp.stop()


# --- traffic ---------------------------------------------------------------------------------------------

RECEIVER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(120)
c, _ = s.accept(); c.settimeout(60)
n = 0; t0 = None; buf = bytearray(1 << 20)
while True:
    k = c.recv_into(buf)
    if not k: break
    if t0 is None: t0 = time.monotonic()
    n += k
print(n, time.monotonic() - (t0 or time.monotonic()), flush=True)
"""
SENDER = r"""
import socket, sys, time
for _ in range(300):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10, source_address=(sys.argv[3], 0)); break
    except OSError: time.sleep(0.1)
buf = (b"X0-ESP-CAPTURE-MARKER-" * 12000)[:1 << 18]
end = time.monotonic() + float(sys.argv[4])
while time.monotonic() < end: c.sendall(buf)
c.close()
"""


def tcp_run(addrs: dict[int, str], seconds: float, port: int) -> float:
    """Mbit/s of one TCP stream n1 -> n4 (receiver's clock, first byte to close)."""
    rx = subprocess.Popen(["ip", "netns", "exec", f"{NS}n4", sys.executable, "-c", RECEIVER, addrs[4], str(port)],
                          stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        subprocess.run(["ip", "netns", "exec", f"{NS}n1", sys.executable, "-c", SENDER, addrs[4], str(port), addrs[1],
                        str(seconds)], check=True, timeout=seconds + 120)
        out, _ = rx.communicate(timeout=120)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    nbytes, dur = out.split()
    return int(nbytes) * 8 / max(float(dur), 1e-6) / 1e6


CAPTURE = r"""
import socket, sys, time, json
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd)); s.bind((sys.argv[1], 0)); s.settimeout(0.2)
end = time.monotonic() + float(sys.argv[2]); kinds = {}; marker = 0; n = 0; print("ready", flush=True)
while time.monotonic() < end:
    try: p = s.recv(70000)
    except socket.timeout: continue
    n += 1; nh = p[14 + 6]; kinds[nh] = kinds.get(nh, 0) + 1
    marker += p.count(b"X0-ESP-CAPTURE-MARKER-")
print(json.dumps({"packets": n, "next_headers": kinds, "marker_hits": marker}))
"""


def capture(addrs: dict[int, str], seconds: float, port: int) -> dict:
    """Capture on n2's link to n3 while a marker stream crosses; the next-header census and marker hits."""
    cap = subprocess.Popen(["ip", "netns", "exec", f"{NS}n2", sys.executable, "-c", CAPTURE, "v23", str(seconds + 6)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
        tcp_run(addrs, seconds, port)
        out, _ = cap.communicate(timeout=seconds + 60)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    return json.loads(out.strip().splitlines()[-1])


def crypto_calibration(seconds: float = 1.0) -> dict:
    """How fast this machine seals with no network at all: OpenSSL's AES-256-GCM through `cryptography`
    on 60 kB (the userspace path's unit) and the kernel's gcm(aes) through AF_ALG on 1400 bytes (ESP's
    unit, one packet): under TCG both are emulated and bound every encrypted figure."""
    out: dict = {}
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, data, n = AESGCM(bytes(32)), bytes(60000), 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        aead.encrypt(n.to_bytes(12, "little"), data, None)
        n += 1
    out["crypto_userspace_aesgcm_mbps"] = round(n * len(data) * 8 / seconds / 1e6, 1)
    try:
        alg = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
        alg.bind(("aead", "gcm(aes)"))
        alg.setsockopt(socket.SOL_ALG, socket.ALG_SET_KEY, bytes(32))
        alg.setsockopt(socket.SOL_ALG, socket.ALG_SET_AEAD_AUTHSIZE, None, 16)
        op, _ = alg.accept()
        data, n = bytes(1400), 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            op.sendmsg_afalg([data], op=socket.ALG_OP_ENCRYPT, iv=bytes(12), assoclen=0)
            op.recv(len(data) + 16)
            n += 1
        out["crypto_kernel_gcm_1400b_mbps"] = round(n * len(data) * 8 / seconds / 1e6, 1)
    except OSError as exc:
        out["crypto_kernel_gcm_1400b_mbps"] = None
        out["crypto_kernel_error"] = str(exc)
    return out


# --- the orchestration ------------------------------------------------------------------------------------

def start_nodes(esp: str, tmp: str, cipher: str = "auto") -> list[subprocess.Popen]:
    procs = []
    for n in (1, 4):
        path = f"{tmp}/status{n}.json"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        procs.append(subprocess.Popen(["ip", "netns", "exec", f"{NS}n{n}", sys.executable, __file__, "--node", str(n),
                                       "--esp", esp, "--cipher", cipher, "--status", path]))
    return procs


def stop_nodes(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def status(tmp: str, n: int) -> dict:
    try:
        with open(f"{tmp}/status{n}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def wait_path(addrs: dict[int, str], tmp: str, want: str, timeout_s: float) -> dict:
    """Poke n1 -> n4 (a UDP datagram through the overlay starts the handshake) until both ends' peer
    entry is established on the wanted path; returns n1's status."""
    end = time.monotonic() + timeout_s
    poke = ("import socket,sys; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind((sys.argv[2], 0)); "
            "s.sendto(b'poke', (sys.argv[1], 9))")
    while time.monotonic() < end:
        subprocess.run(["ip", "netns", "exec", f"{NS}n1", sys.executable, "-c", poke, addrs[4], addrs[1]],
                       capture_output=True, timeout=30)
        s1, s4 = status(tmp, 1), status(tmp, 4)
        ok = all(any(p.get("established") and p.get("path") == want for p in s.get("peers", [])) for s in (s1, s4))
        if ok:
            return s1
        time.sleep(1.0)
    raise RuntimeError(f"no {want} session within {timeout_s} s: n1 {status(tmp, 1)} n4 {status(tmp, 4)}")


GUEST_PATH = "/data/overlay_guest.py"
GUEST_OUT = "/tmp/overlay_guest.json"
VM_BOOT_TIMEOUT_S = 600.0


def run_in_vm(board: str = "x86_64", seconds: float = 5.0, workdir: str | None = None,
              timeout_s: float = 1500.0, modes: str = "clear,esp,userspace,esp-chacha", ctx=None) -> dict:
    """Build (bootstrap cached) and boot the router image once, copy this script onto its /data, stop the
    guest's own x0node (its CPU would only add noise), run the script there and return its JSON. `ctx`: an
    image built already from these sources (a test session's), booted instead of building again."""
    import pathlib
    import re
    import tempfile

    root = pathlib.Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from image import pipeline, provision
    from image.board import load_board
    from image.qemu import VM

    ctx = ctx or pipeline.build(board, bundle=False)
    with tempfile.TemporaryDirectory(prefix="x0ovg", dir=workdir) as tmp:
        work = pathlib.Path(tmp)
        disk = work / "disk.img"
        subprocess.run(["cp", "--sparse=always", str(ctx.disk), str(disk)], check=True)
        anchor = provision.make_anchor(work / "anchor.key")
        provision.provision(ctx.board, disk, anchor, debug_console=True,
                            extra={"overlay_guest.py": pathlib.Path(__file__).read_bytes()})
        vm = VM(board=load_board(board), disk=disk, vmdir=work)
        try:
            vm.start()
            vm.wait_for(re.compile(r"root@x0[^\n]*# "), VM_BOOT_TIMEOUT_S)
            vm.shell("systemctl stop x0node", timeout_s=180)
            rc, out = vm.shell(f"python3 {GUEST_PATH} --seconds {seconds} --modes {modes} --out {GUEST_OUT} 2>&1 | tail -40",
                               timeout_s=timeout_s)
            return read_guest_file(vm, GUEST_OUT, out)
        finally:
            vm.stop()


CHUNK_BYTES = 384
CHUNK_TRIES = 8
READER = "import sys,zlib;d=open(sys.argv[1],'rb').read();c=d[int(sys.argv[2]):int(sys.argv[2])+{n}];print(len(d),c.hex(),zlib.crc32(c))"


def read_guest_file(vm, path: str, console: str) -> dict:
    """The guest's JSON, read over the serial console in small hex chunks, each with its CRC and retried
    until it matches: the emulated UART now and then drops or doubles a character."""
    import re
    import zlib

    data, total, off = b"", None, 0
    while total is None or off < total:
        for _ in range(CHUNK_TRIES):
            _, got = vm.shell(f'python3 -c "{READER.format(n=CHUNK_BYTES)}" {path} {off}', timeout_s=120)
            m = re.search(r"(\d+) ([0-9a-f]*) (\d+)", got)
            if m and len(m.group(2)) % 2 == 0:
                chunk = bytes.fromhex(m.group(2))
                if zlib.crc32(chunk) == int(m.group(3)) and (chunk or int(m.group(1)) <= off):
                    total = int(m.group(1))
                    break
        else:
            raise RuntimeError(f"could not read {path} from the guest at offset {off}:\n{console}")
        data += chunk
        off += len(chunk)
    return json.loads(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--modes", default="clear,esp,userspace,esp-chacha",
                    help="clear, esp (kernel ESP, cipher auto), userspace (esp off), esp-chacha (kernel ESP, ChaCha20)")
    ap.add_argument("--capture-seconds", type=float, default=2.0)
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--node", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--esp", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--status", help=argparse.SUPPRESS)
    ap.add_argument("--cipher", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args()
    if args.node:
        asyncio.run(run_node(args.node, args.esp, args.status, args.cipher))
        return 0
    from x0node.overlay import xfrm
    from x0node.overlay.datapath import cipher_id

    _, ids = identities()
    addrs = {n: i.mesh_address for n, i in ids.items()}
    cipher = cipher_id("auto")
    esp_reason = xfrm.probe(cipher)
    result: dict = {"bench": "overlay_guest", "kernel": os.uname().release, "machine": os.uname().machine,
                    "esp_available": esp_reason is None, "esp_unavailable": esp_reason, "seconds": args.seconds}
    modes = [m for m in args.modes.split(",") if m and (not m.startswith("esp") or esp_reason is None)]
    result.update(crypto_calibration())
    port = PORT
    try:
        build_line(addrs)
        for mode in modes:
            kernel_esp = mode.startswith("esp")
            procs = [] if mode == "clear" else start_nodes("auto" if kernel_esp else "off", args.tmp,
                                                            "chacha20-poly1305" if mode == "esp-chacha" else "auto")
            try:
                if procs:
                    st = wait_path(addrs, args.tmp, "esp" if kernel_esp else "userspace", 180.0)
                    result[f"{mode}_datapath"] = st.get("datapath")
                    result["cipher"] = st.get("cipher")
                port += 1
                tcp_run(addrs, 1.0, port)  # warm-up (and, for esp, traffic the status then shows)
                port += 1
                result[f"{mode}_cipher"] = st.get("cipher") if procs else None
                result[f"{mode}_mbps"] = round(tcp_run(addrs, args.seconds, port), 1)
                if mode == "esp":
                    port += 1
                    result["esp_capture"] = capture(addrs, args.capture_seconds, port)
                    st = status(args.tmp, 1)
                    peer = next(p for p in st.get("peers", []) if p.get("path") == "esp")
                    result["esp_state_tx_bytes"] = peer.get("esp_tx_bytes")
                    result["esp_counters"] = {k: v for k, v in st.get("counters", {}).items() if k.startswith("esp_")}
                    result["xfrm_states_n1"] = sh("ip", "xfrm", "state", "count", ns=1).strip()
                    result["xfrm_policy_n1"] = sh("ip", "xfrm", "policy", ns=1)
            finally:
                stop_nodes(procs)
            if mode == "esp":
                result["xfrm_after_stop_n1"] = sh("ip", "xfrm", "state", ns=1) + sh("ip", "xfrm", "policy", ns=1)
    finally:
        teardown()
    clear = result.get("clear_mbps")
    for mode in ("esp", "userspace", "esp-chacha"):
        if clear and result.get(f"{mode}_mbps") is not None:
            result[f"{mode}_vs_clear"] = round(result[f"{mode}_mbps"] / clear, 3)
    print(f"{'variant':<12} {'Mbit/s':>10}")
    for mode in ("clear", "esp", "userspace", "esp-chacha"):
        if f"{mode}_mbps" in result:
            print(f"{mode:<12} {result[f'{mode}_mbps']:>10}")
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
