"""Sequence-number arithmetic with wraparound (RFC 1982) and the replay window."""

from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.proto.seqno import ReplayWindow, seq_diff, seq_newer, seq_next

bits_st = st.sampled_from([8, 16, 32])


@given(bits_st, st.data())
def test_newer_is_antisymmetric_and_shift_invariant(bits, data):
    mod = 1 << bits
    a = data.draw(st.integers(0, mod - 1))
    b = data.draw(st.integers(0, mod - 1))
    k = data.draw(st.integers(0, mod - 1))
    assert not (seq_newer(a, b, bits) and seq_newer(b, a, bits))
    assert seq_newer(a, b, bits) == seq_newer((a + k) % mod, (b + k) % mod, bits)
    assert not seq_newer(a, a, bits)
    if a != b and (a - b) % mod != mod // 2:
        assert seq_newer(a, b, bits) != seq_newer(b, a, bits)


@given(bits_st, st.data())
def test_small_steps_forward_are_newer_across_wrap(bits, data):
    mod = 1 << bits
    a = data.draw(st.integers(0, mod - 1))
    step = data.draw(st.integers(1, mod // 2 - 1))
    b = (a + step) % mod
    assert seq_newer(b, a, bits)
    assert seq_diff(b, a, bits) == step
    assert seq_diff(a, b, bits) == -step


@given(bits_st, st.integers(0, 2**32 - 1))
def test_next_is_newer_and_never_zero(bits, a):
    a %= 1 << bits
    n = seq_next(a, bits)
    assert n != 0 and seq_newer(n, a, bits)


@settings(max_examples=200)
@given(st.integers(0, 0xFFFF), st.lists(st.integers(-70, 70), max_size=200), st.integers(1, 64))
def test_replay_window_never_accepts_twice_and_matches_model(start, moves, width):
    w = ReplayWindow(width=width, bits=16)
    accepted: set[int] = set()
    highest = None
    cur = start
    for mv in moves:
        cur = (cur + mv) % (1 << 16)
        ok = w.accept(cur)
        if cur in accepted:
            assert not ok  # never twice
        if ok:
            accepted.add(cur)
            if highest is None or seq_newer(cur, highest, 16):
                highest = cur
        elif highest is not None and cur not in accepted:
            # refused and never seen: it must be too old for the window
            assert -seq_diff(cur, highest, 16) >= width
        # window state is bounded
        assert w.mask < (1 << width)
