from x0node.proto.seqno import ReplayWindow, seq_diff, seq_newer, seq_next


def test_serial_compare_wraps():
    assert seq_newer(1, 0xFFFFFFFF)
    assert not seq_newer(0xFFFFFFFF, 1)
    assert seq_newer(5, 3) and not seq_newer(3, 5)
    assert not seq_newer(7, 7)
    # exactly half-way: neither is newer
    assert not seq_newer(0x80000000, 0) and not seq_newer(0, 0x80000000)
    assert seq_newer(0, 0xFFFF, bits=16)
    assert seq_diff(2, 0xFFFE, bits=16) == 4


def test_seq_next_skips_zero():
    assert seq_next(0xFFFFFFFF) == 1
    assert seq_next(0xFFFF, bits=16) == 1
    assert seq_next(4) == 5


def test_replay_window_accepts_once_and_in_window_reordering():
    w = ReplayWindow(width=8, bits=16)
    assert w.accept(10)
    assert not w.accept(10)
    assert w.accept(12)
    assert w.accept(11)  # reordered, inside window
    assert not w.accept(11)
    assert w.accept(20)
    assert not w.accept(12)  # fell out of window (20 - 12 = 8)
    assert w.accept(13)


def test_replay_window_across_wrap():
    w = ReplayWindow(width=64, bits=16)
    assert w.accept(0xFFFE)
    assert w.accept(1)  # newer across the wrap
    assert not w.accept(0xFFFE)
    assert w.accept(0xFFFF)
    assert w.seen_in_last(4) == 3  # 1, 0xffff, 0xfffe seen; 0 never sent


def test_replay_window_rejects_out_of_range():
    w = ReplayWindow(width=8, bits=16)
    assert not w.accept(1 << 16)
    assert not w.accept(-1)
