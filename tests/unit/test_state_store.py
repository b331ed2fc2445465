import pytest

from x0node.proto.identity import Identity
from x0node.proto.trust import Credential
from x0node.proto.wire import DecodeError
from x0node.state.record import Kind, Record, Scope, encode_lww
from x0node.state.store import MAX_RECORDS_PER_ORIGIN, Store, decode_snapshot

ID = Identity.from_seed(b"\x01" * 32)
CRED = Credential(ID.public_key)


def rec(version: int, key: str = "k", value: bytes = b"1", ns: str = "kv") -> Record:
    r = Record(ID.node_id, version, Scope.MESH, Kind.LWW, 0, ns, key, encode_lww(value))
    return Record(r.origin, r.version, r.scope, r.kind, r.ttl_s, r.ns, r.key, r.payload, ID.sign(r.signed_message()))


def test_put_keeps_the_newest_per_origin_and_object_and_digest_tracks_the_set():
    a, b = Store(), Store()
    assert a.put(rec(2), CRED) == "new" and a.put(rec(1), CRED) == "old" and a.put(rec(2), CRED) == "old"
    assert b.put(rec(1), CRED) == "new" and b.digest() != a.digest()
    assert b.put(rec(2), CRED) == "new" and b.digest() == a.digest() and b.count == 1
    assert a.vector() == [(ID.node_id, 2, a.origin_hash8(ID.node_id))]
    a.remove(ID.node_id, ("kv", "k"))
    assert a.digest() == bytes(16) and not a.origins


def test_limits_refuse_without_evicting():
    s = Store()
    for i in range(MAX_RECORDS_PER_ORIGIN):
        assert s.put(rec(i + 1, key=f"k{i}"), CRED) == "new"
    assert s.put(rec(10_000, key="one-more"), CRED) == "limit_origin_records"
    assert s.count == MAX_RECORDS_PER_ORIGIN


def test_snapshot_round_trip_and_damage_detected():
    s = Store()
    for i in range(5):
        s.put(rec(i + 1, key=f"k{i}"), CRED)
    data = s.encode_snapshot(hlc=99)
    hlc, origins = decode_snapshot(data)
    assert hlc == 99 and len(origins[0][1]) == 5 and origins[0][0] == CRED
    for bad in (data[:-1], data[:10] + bytes([data[10] ^ 1]) + data[11:], b"", b"X0ST\x01" + bytes(40)):
        with pytest.raises(DecodeError):
            decode_snapshot(bad)


def test_fold_views():
    s = Store()
    s.put(rec(5, key="x", value=b'{"a":1}'), CRED)
    assert s.entry("kv", "x")["value"] == {"a": 1}
    assert s.objects()["kv"]["x"]["origin"] == ID.node_id.hex()
