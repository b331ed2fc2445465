import json

import pytest

from x0node.telemetry import validator
from x0node.telemetry.loader import MapInfo, ProgInfo


def test_limits_name_the_object_part():
    progs = [ProgInfo("p", "xdp", 6, 5000, b"")]
    maps = [MapInfo("big", 1, 4, 4096, 100000), MapInfo("pc", 6, 4, 8, 1000)]
    problems = validator.check_contents(progs, maps, validator.Policy(), ncpus=2)
    assert "program p has 5000 instructions (limit 4096)" in problems
    assert "map big has 100000 entries (limit 65536)" in problems
    assert any(p.startswith("map big needs") for p in problems)
    assert not any("pc" in p for p in problems)


def test_percpu_maps_count_per_cpu():
    m = MapInfo("pc", 6, 4, 1024, 8192)  # 8 MiB per CPU
    assert validator.check_contents([], [m], validator.Policy(), ncpus=1) == []
    assert validator.check_contents([], [m], validator.Policy(), ncpus=4)


def test_manifest_loading(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"files": {"a": "A" * 64, "b": "short", "c": 3}}))
    assert validator.load_manifest(str(p)) == frozenset({"a" * 64})
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'files'"):
        validator.load_manifest(str(p))
    with pytest.raises(ValueError, match="cannot read"):
        validator.load_manifest(str(tmp_path / "missing.json"))


def test_digest_check_message():
    assert validator.check_digest("ab" * 32, frozenset({"ab" * 32}), "m") == []
    (msg,) = validator.check_digest("cd" * 32, frozenset({"ab" * 32}), "m.json")
    assert "not in the manifest m.json" in msg


def test_digest_is_checked_before_the_object_is_parsed(tmp_path, monkeypatch):
    """An object that is not in the manifest is refused on its digest alone: none of its bytes reach
    the ELF parser (or libbpf)."""
    import hashlib

    from x0node.telemetry import elf

    obj = tmp_path / "evil.bpf.o"
    obj.write_bytes(b"\x7fELF" + bytes(200))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": {"good.bpf.o": hashlib.sha256(b"good").hexdigest()}}))

    def parse(data: bytes):
        raise AssertionError("parsed before the digest was checked")

    monkeypatch.setattr(elf, "parse", parse)
    with pytest.raises(validator.ValidationError) as info:
        validator.validate_file(str(obj), str(manifest))
    assert len(info.value.problems) == 1 and "not in the manifest" in info.value.problems[0]
