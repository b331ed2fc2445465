"""Staging a bundle on disk: verified chunks only, a bitmap that survives a restart, space checks."""

from __future__ import annotations

import hashlib

import pytest

from x0node.ota import manifest as mf
from x0node.ota import staging

CHUNK = 64 * 1024


def manifest_for(data: bytes) -> mf.Manifest:
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    return mf.Manifest("x86_64", "x0tta6bl4-x86_64", "1.1", 2, "b.raucb", hashlib.sha256(data).hexdigest(),
                       len(data), CHUNK, mf.chunk_hashes(chunks))


DATA = bytes(range(256)) * 1000 + b"tail"
M = manifest_for(DATA)


def chunk(i: int) -> bytes:
    return DATA[i * CHUNK:(i + 1) * CHUNK]


def test_put_only_verified_and_resume_from_bitmap(tmp_path):
    st = staging.Staged.open(tmp_path, M, b"{}")
    assert not st.put(0, b"x" * CHUNK)
    assert st.have == set()
    assert st.put(1, chunk(1)) and st.put(3, chunk(3))
    again = staging.Staged.open(tmp_path, M, b"{}")
    assert again.have == {1, 3}
    assert again.read(1) == chunk(1) and again.read(0) is None
    for i in range(len(M.chunks)):
        again.put(i, chunk(i))
    assert again.complete and again.verify_whole()


def test_damaged_chunk_is_not_served_and_is_forgotten(tmp_path):
    st = staging.Staged.open(tmp_path, M, b"{}")
    st.put(2, chunk(2))
    with open(st.bundle, "r+b") as f:
        f.seek(2 * CHUNK + 5)
        f.write(b"\xff")
    assert st.read(2) is None and 2 not in st.have
    assert 2 not in staging.Staged.open(tmp_path, M, b"{}").have


def test_adopt_checks_every_chunk_also_in_place(tmp_path):
    src = tmp_path / "in.raucb"
    bad = bytearray(DATA)
    bad[CHUNK + 1] ^= 1
    src.write_bytes(bytes(bad))
    st = staging.Staged.open(tmp_path / "s", M, b"{}")
    st.adopt(src)
    assert st.have == set(range(len(M.chunks))) - {1}
    st.put(1, chunk(1))
    st.adopt(st.bundle)  # its own file: no copy
    assert st.complete and st.verify_whole()


def test_space_check_names_the_shortfall(tmp_path, monkeypatch):
    st = staging.Staged.open(tmp_path, M, b"{}")
    monkeypatch.setattr(staging.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(staging.NoSpace, match="short"):
        st.ensure_space()


def test_prune_keeps_only_what_is_named(tmp_path):
    staging.Staged.open(tmp_path, M, b"{}")
    other = tmp_path / ("0" * 64)
    other.mkdir()
    assert staging.prune(tmp_path, {M.id}) == ["0" * 64]
    assert (tmp_path / M.id).is_dir()


def test_factory_reset_keeps_identity(tmp_path):
    import argparse

    from x0node.ota import cli

    data = tmp_path / "data" / "x0node"
    (data / "web").mkdir(parents=True)
    (data / "node.key").write_text("k")
    (data / "config.local.toml").write_text("[node]\n")
    (tmp_path / "data" / "etc" / "x0node").mkdir(parents=True)
    args = argparse.Namespace(data_dir=str(data), yes=True, no_reboot=True)
    assert cli._factory_reset(args) == 0
    assert (data / "node.key").exists()
    assert not (data / "web").exists() and not (data / "config.local.toml").exists()
    assert not (tmp_path / "data" / "etc" / "x0node").exists()


class GrowingSet(set):
    """`have` as a worker thread's `put` changes it while the event loop reads the bitmap: each time
    it is iterated, another chunk arrives in the middle."""

    def __iter__(self):
        it = set.__iter__(self)
        yield next(it)
        set.add(self, 2)
        yield from it  # the live set changed: "Set changed size during iteration", as in the daemon


def test_bitmap_is_read_from_a_snapshot_while_chunks_arrive(tmp_path):
    st = staging.Staged.open(tmp_path, M, b"{}")
    assert st.put(0, chunk(0))
    st.have = GrowingSet(st.have)
    bits = bytes.fromhex(st.bitmap_hex())  # iterating the live set raised "Set changed size during iteration"
    assert bits[0] & 1 and len(bits) == (len(M.chunks) + 7) // 8
    assert st.put(1, chunk(1)) and staging.Staged.open(tmp_path, M, b"{}").have >= {0, 1}
