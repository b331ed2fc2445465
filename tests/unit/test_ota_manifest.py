"""The update manifest: parsing bounds, N-of-M signatures, and what a node admits."""

from __future__ import annotations

import hashlib
import json

import pytest
from nacl.signing import SigningKey

from x0node.ota import manifest as mf

CHUNK = 64 * 1024


def make(serial: int = 10, board: str = "x86_64", version: str = "1.0", data: bytes = b"x" * (CHUNK * 2 + 5)):
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    return mf.Manifest(board=board, compat=f"x0tta6bl4-{board}", version=version, serial=serial,
                       bundle_name="b.raucb", bundle_sha256=hashlib.sha256(data).hexdigest(), bundle_bytes=len(data),
                       chunk_bytes=CHUNK, chunks=mf.chunk_hashes(chunks))


KEYS = [SigningKey(bytes([i]) * 32) for i in range(1, 4)]
RELEASE = mf.ReleaseKeys(frozenset(k.verify_key.encode().hex() for k in KEYS), 2)


def local(**kw):
    base = dict(board="x86_64", compat="x0tta6bl4-x86_64", running_serial=5, running_version="0.9", highest_serial=5)
    return mf.Local(**(base | kw))


def test_round_trip_and_two_of_three():
    m = make()
    data = mf.sign(m, KEYS[:2]).encode()
    assert mf.verify(data, RELEASE) == m
    assert mf.parse(data).manifest.id == m.id


def test_one_signature_is_not_enough_and_duplicates_do_not_count():
    m = make()
    one = mf.sign(m, KEYS[:1])
    with pytest.raises(mf.ManifestError) as e:
        mf.verify(one.encode(), RELEASE)
    assert e.value.reason == "bad_signature"
    doc = json.loads(one.encode())
    doc["signatures"] *= 2
    with pytest.raises(mf.ManifestError):
        mf.verify(json.dumps(doc).encode(), RELEASE)


def test_unknown_keys_are_ignored():
    m = make()
    strangers = [SigningKey(bytes([9]) * 32), SigningKey(bytes([8]) * 32)]
    with pytest.raises(mf.ManifestError) as e:
        mf.verify(mf.sign(m, strangers + KEYS[:1]).encode(), RELEASE)
    assert e.value.reason == "bad_signature"


def test_tampered_field_breaks_the_signature():
    doc = json.loads(mf.sign(make(), KEYS).encode())
    doc["manifest"]["serial"] = 99
    with pytest.raises(mf.ManifestError) as e:
        mf.verify(json.dumps(doc).encode(), RELEASE)
    assert e.value.reason == "bad_signature"


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d["manifest"].update(extra=1), "malformed"),
    (lambda d: d["manifest"]["bundle"].update(chunks=[]), "malformed"),
    (lambda d: d["manifest"]["bundle"].update(bytes=10**6), "malformed"),
    (lambda d: d["manifest"].update(serial=1.5), "malformed"),
    (lambda d: d["manifest"].update(board="../x"), "malformed"),
    (lambda d: d.update(signatures=[{"key": "zz", "sig": "00"}]), "malformed"),
])
def test_malformed_is_refused_with_a_reason(mutate, reason):
    doc = json.loads(mf.sign(make(), KEYS).encode())
    mutate(doc)
    with pytest.raises(mf.ManifestError) as e:
        mf.parse(json.dumps(doc).encode())
    assert e.value.reason == reason


def test_size_bound_before_parsing():
    with pytest.raises(mf.ManifestError) as e:
        mf.parse(b" " * (mf.MANIFEST_MAX_BYTES + 1))
    assert e.value.reason == "too_large"


def test_chunk_check():
    data = bytes(range(256)) * 600
    m = make(data=data)
    assert m.chunk_ok(0, data[:CHUNK])
    assert m.chunk_ok(len(m.chunks) - 1, data[CHUNK * (len(m.chunks) - 1):])
    assert not m.chunk_ok(0, data[1:CHUNK + 1])
    assert not m.chunk_ok(5, b"")


@pytest.mark.parametrize("m, kw, reason", [
    (make(board="rpi4"), {}, "wrong_board"),
    (make(serial=3), {}, "downgrade"),
    (make(serial=3), {"from_mesh": True}, "replayed"),
    (make(serial=7), {"from_mesh": True}, "replayed"),
    (make(serial=5, version="0.9"), {}, "installed"),
])
def test_admit_refusals(m, kw, reason):
    r = mf.admit(m, local(highest_serial=8), **kw)
    assert r is not None and r.reason == reason, r


def test_admit_newer_and_force():
    assert mf.admit(make(serial=9), local()) is None
    assert mf.admit(make(serial=3), local(), force=True) is None
    # the mesh can never force a downgrade
    assert mf.admit(make(serial=3), local(), force=True, from_mesh=True).reason == "replayed"


def test_failed_here_is_not_taken_again():
    m = make(serial=9)
    assert mf.admit(m, local(failed=frozenset({m.id})), from_mesh=True).reason == "failed_here"


def test_release_keys_validation():
    with pytest.raises(mf.ManifestError):
        mf.ReleaseKeys.from_json({"keys": ["00" * 32], "threshold": 2})
    rk = mf.ReleaseKeys.from_json(RELEASE.to_json())
    assert rk == RELEASE
