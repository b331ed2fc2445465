from x0node.proto.lsdb import LsaEntry, Lsdb


def _e(origin, seq, now=0.0, raw=None):
    return LsaEntry(
        origin, seq, raw if raw is not None else bytes([seq % 256]) * 4 + origin, object(), now, b"k"
    )


def test_newer_replaces_and_raw_index():
    db = Lsdb()
    a = b"\x01" * 16
    assert db.is_newer(a, 1)
    db.install(_e(a, 1))
    assert not db.is_newer(a, 1) and db.is_newer(a, 2) and not db.is_newer(a, 0xFFFFFFFF)
    e2 = _e(a, 2)
    db.install(e2)
    assert db.by_raw(e2.raw) is e2
    assert db.by_raw(_e(a, 1).raw) is None


def test_bound_and_tombstone_and_expiry():
    db = Lsdb(max_entries=2, max_age_s=10.0)
    a, b, c = (bytes([i]) * 16 for i in (1, 2, 3))
    assert db.install(_e(a, 1, 0.0)) and db.install(_e(b, 1, 5.0))
    assert not db.install(_e(c, 1))  # full
    assert db.install(_e(a, 2, 0.0))  # replacing an origin is always allowed
    db.tombstone(a, 1.0)
    assert db.get(a).withdrawn and db.get(a).seq == 2 and a not in db.lsas()
    assert db.expire(11.5) == []  # a was a tombstone (removed silently), b still young
    assert db.get(a) is None and db.get(b) is not None
    assert db.expire(15.0) == [b]
    assert len(db) == 0


def test_expire_keeps_own():
    db = Lsdb(max_age_s=1.0)
    me = b"\x09" * 16
    db.install(_e(me, 1, 0.0))
    assert db.expire(5.0, keep=me) == [] and db.get(me) is not None
