"""The validator and loader refuse bad objects with clear errors: tampered, over-sized, wrong kind,
and one the kernel verifier rejects (its log is shown)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from tests.integration.bpf_support import BPF_DIR
from x0node.telemetry import elf, libbpf, validator
from x0node.telemetry.loader import BpfObject

HEADER = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
OVERSIZED = HEADER + """
struct big { __u8 bytes[4096]; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1 << 20); __type(key, __u32);
         __type(value, struct big); } huge SEC(".maps");
SEC("xdp") int x(struct xdp_md *ctx) { __u32 k = 0; return bpf_map_lookup_elem(&huge, &k) ? 2 : 1; }
char LICENSE[] SEC("license") = "GPL";
"""
KPROBE = HEADER + """
SEC("kprobe/tcp_v4_connect") int k(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "Proprietary";
"""
UNSAFE = HEADER + """
SEC("xdp") int x(struct xdp_md *ctx) {
    unsigned char *p = (unsigned char *)(long)ctx->data;
    return p[20] ? 2 : 1;   /* no bounds check against data_end */
}
char LICENSE[] SEC("license") = "GPL";
"""


def _build(tmp_path, name: str, source: str) -> str:
    src = tmp_path / f"{name}.bpf.c"
    src.write_text(source)
    out = tmp_path / f"{name}.bpf.o"
    subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{BPF_DIR}", "-c", str(src), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return str(out)


def _manifest(tmp_path, *paths: str) -> str:
    files = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"files": files}))
    return str(m)


def test_shipped_objects_pass():
    for name in ("xdp_mac_stats", "tcp_states", "tcp_rtt", "tcp_retrans"):
        report = validator.validate_file(str(BPF_DIR / f"{name}.bpf.o"))
        assert report.license == "GPL" and report.programs


def test_tampered_object_is_refused(tmp_path):
    path = tmp_path / "xdp_mac_stats.bpf.o"
    shutil.copy(BPF_DIR / "xdp_mac_stats.bpf.o", path)
    data = bytearray(path.read_bytes())
    sec = elf.parse(bytes(data)).section("xdp")
    data[sec.offset + 8] ^= 0x01  # one bit of the second instruction
    path.write_bytes(bytes(data))
    with pytest.raises(validator.ValidationError) as exc:
        validator.validate_file(str(path))
    assert "is not in the manifest" in str(exc.value)
    assert hashlib.sha256(bytes(data)).hexdigest() in str(exc.value)


def test_oversized_map_is_refused_even_when_listed(tmp_path):
    path = _build(tmp_path, "oversized", OVERSIZED)
    with pytest.raises(validator.ValidationError) as exc:
        validator.validate_file(path, _manifest(tmp_path, path))
    msg = str(exc.value)
    assert "map huge has 1048576 entries (limit 65536)" in msg
    assert "map huge needs" in msg and "bytes (limit 16777216)" in msg


def test_wrong_program_kind_and_license_are_refused(tmp_path):
    path = _build(tmp_path, "kprobe", KPROBE)
    with pytest.raises(validator.ValidationError) as exc:
        validator.validate_file(path, _manifest(tmp_path, path))
    assert "program section 'kprobe/tcp_v4_connect' is not an allowed kind" in str(exc.value)
    assert "license 'Proprietary' is not GPL-compatible" in str(exc.value)


def test_verifier_refusal_carries_the_log(tmp_path):
    path = _build(tmp_path, "unsafe", UNSAFE)
    validator.validate_file(path, _manifest(tmp_path, path))  # passes the static checks
    obj = BpfObject(path, pin_root=None)
    try:
        with pytest.raises(libbpf.BpfError) as exc:
            obj.load()
    finally:
        obj.close()
    assert "kernel refused" in str(exc.value)
    assert "invalid access to packet" in exc.value.log


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.bpf.o"
    big.write_bytes(bytes(validator.OBJECT_MAX_BYTES + 1))
    with pytest.raises(validator.ValidationError) as exc:
        validator.validate_file(str(big))
    assert f"object is {validator.OBJECT_MAX_BYTES + 1} bytes (limit {validator.OBJECT_MAX_BYTES})" in str(exc.value)


def test_cli_validate_load_shows_the_verifier_log(tmp_path, capsys):
    from x0node.cli import main

    path = _build(tmp_path, "unsafe", UNSAFE)
    manifest = _manifest(tmp_path, path)
    assert main(["bpf", "validate", path, "--manifest", manifest]) == 0  # static checks pass
    capsys.readouterr()
    assert main(["bpf", "validate", path, "--manifest", manifest, "--load"]) == 1
    err = capsys.readouterr().err
    assert "REFUSED" in err and "invalid access to packet" in err
    assert main(["bpf", "validate", str(BPF_DIR / "xdp_mac_stats.bpf.o"), "--load"]) == 0
    assert "(loaded and unloaded)" in capsys.readouterr().out
