import random

from x0node.proto.slots import SlotScheduler, slot_for


def test_slot_is_deterministic_per_id():
    assert slot_for(b"\x01" * 16, 0, 100) == slot_for(b"\x01" * 16, 0, 100)
    s = SlotScheduler(b"\x01" * 16, 0.1, 0.0, random.Random(1))
    assert s.slot == slot_for(b"\x01" * 16, 0, 100)


def test_one_beacon_per_frame_with_bounded_jitter():
    s = SlotScheduler(b"\x02" * 16, 0.1, 0.0, random.Random(2))
    t, times = 0.0, []
    for _ in range(50):
        t = s.next_send(t)
        times.append(t)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(abs(g - 0.1) <= 0.1 * 0.01 for g in gaps)


def test_collision_moves_larger_id_only():
    lo, hi = b"\x01" * 16, b"\x02" * 16
    a = SlotScheduler(lo, 0.1, 0.0, random.Random(3))
    b = SlotScheduler(hi, 0.1, 0.0, random.Random(4))
    # b hears a beacon exactly at the centre of its own slot: collision, b (larger id) moves
    t = b.origin_s + (b.slot + 0.2) * b.slot_len_s
    old = b.slot
    assert b.observe(t, lo)
    assert b.slot != old and b.collisions == 1
    ta = a.origin_s + (a.slot + 0.2) * a.slot_len_s
    assert not a.observe(ta, hi)  # a keeps its slot
    assert a.collisions == 1


def test_far_beacon_is_no_collision():
    s = SlotScheduler(b"\x05" * 16, 0.1, 0.0, random.Random(5))
    t = s.origin_s + ((s.slot + 50) % 100) * s.slot_len_s
    assert not s.observe(t, b"\x01" * 16) and s.collisions == 0
