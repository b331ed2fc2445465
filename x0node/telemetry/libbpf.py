"""Thin ctypes binding to the system libbpf (libbpf1 >= 1.0) and the bpf(2) commands we use.

Rules:
- only this module touches libbpf; everything above it sees Python objects and `BpfError`;
- libbpf >= 1.0 semantics: pointer-returning calls give NULL and set errno, int calls return -errno;
- libbpf's own messages are captured (not printed) into a bounded ring so a failed load can show them
  together with the kernel verifier log;
- the binding is loaded lazily: importing this module never fails on a machine without libbpf, and
  `available()` tells whether BPF can be used at all.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno as errno_mod
import os
import threading
from dataclasses import dataclass

LIBBPF_SONAMES = ("libbpf.so.1", "libbpf.so")
LIBBPF_MESSAGES_MAX = 200
VERIFIER_LOG_BYTES = 4 * 1024 * 1024
BPF_STATS_RUN_TIME = 0
PROG_INFO_BYTES = 256  # prefix of struct bpf_prog_info we read (fields up to verified_insns)
MAP_INFO_BYTES = 96


class BpfError(Exception):
    """A libbpf or kernel failure. `log` holds the verifier log and libbpf messages when there are any."""

    def __init__(self, message: str, err: int = 0, log: str = "") -> None:
        super().__init__(message)
        self.errno = err
        self.log = log

    def __str__(self) -> str:
        base = super().__str__()
        if self.errno:
            base += f" ({errno_mod.errorcode.get(self.errno, self.errno)}: {os.strerror(self.errno)})"
        return base


class TestRunOpts(ctypes.Structure):
    __test__ = False  # not a pytest class
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class TestRunResult:
    __test__ = False
    retval: int
    duration_ns: int  # kernel-measured mean per repetition
    data_out: bytes


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_messages: collections.deque[str] = collections.deque(maxlen=LIBBPF_MESSAGES_MAX)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]


def _on_print(level: int, fmt: bytes, va: int) -> int:
    buf = ctypes.create_string_buffer(1024)
    _libc.vsnprintf(buf, len(buf), fmt, va)
    _messages.append(buf.value.decode(errors="replace").rstrip("\n"))
    return 0


_print_cb = _PRINT_FN(_on_print)

_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "libbpf_set_print": (ctypes.c_void_p, [_PRINT_FN]),
    "bpf_object__open_file": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
    "bpf_object__load": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_object__close": (None, [ctypes.c_void_p]),
    "bpf_object__next_program": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_object__next_map": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_program__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__section_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__insn_cnt": (ctypes.c_size_t, [ctypes.c_void_p]),
    "bpf_program__insns": (ctypes.c_void_p, [ctypes.c_void_p]),
    "bpf_program__type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__fd": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__set_log_buf": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
    "bpf_program__set_log_level": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "bpf_program__attach": (ctypes.c_void_p, [ctypes.c_void_p]),
    "bpf_link__destroy": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_link__fd": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_map__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_map__type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_map__key_size": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__value_size": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__max_entries": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__fd": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_map__set_initial_value": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
    "bpf_map__pin": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
    "bpf_map__unpin": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_prog_test_run_opts": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(TestRunOpts)]),
    "bpf_prog_get_next_id": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_prog_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_map_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_obj_get_info_by_fd": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_obj_get": (ctypes.c_int, [ctypes.c_char_p]),
    "bpf_enable_stats": (ctypes.c_int, [ctypes.c_int]),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
}


def lib() -> ctypes.CDLL:
    """The loaded libbpf; raises BpfError when it is not installed."""
    global _lib, _load_error
    with _lock:
        if _lib is not None:
            return _lib
        if _load_error is not None:
            raise BpfError(_load_error)
        handle = None
        for name in (*LIBBPF_SONAMES, ctypes.util.find_library("bpf")):
            if not name:
                continue
            try:
                handle = ctypes.CDLL(name, use_errno=True)
                break
            except OSError:
                continue
        if handle is None:
            _load_error = "libbpf not found (install libbpf1)"
            raise BpfError(_load_error)
        for fname, (res, args) in _SIGNATURES.items():
            fn = getattr(handle, fname)
            fn.restype = res
            fn.argtypes = args
        handle.libbpf_set_print(_print_cb)
        _lib = handle
        return handle


def available() -> tuple[bool, str]:
    """Whether BPF programs can be loaded here, and why not."""
    try:
        lib()
    except BpfError as exc:
        return False, str(exc)
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return False, "kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    if os.geteuid() != 0:
        return False, "loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN)"
    return True, "ok"


def drain_messages() -> list[str]:
    """libbpf messages captured since the last call."""
    out = list(_messages)
    _messages.clear()
    return out


def check(rc: int, what: str) -> int:
    if rc < 0:
        raise BpfError(what, -rc, "\n".join(drain_messages()))
    return rc


def last_errno() -> int:
    return ctypes.get_errno() or errno_mod.EINVAL


def num_possible_cpus() -> int:
    return check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    buf = ctypes.create_string_buffer(value_size)
    rc = lib().bpf_map_lookup_elem(fd, key, buf)
    if rc == -errno_mod.ENOENT:
        return None
    check(rc, "bpf_map_lookup_elem")
    return buf.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    check(lib().bpf_map_update_elem(fd, key, value, flags), "bpf_map_update_elem")


def map_delete(fd: int, key: bytes) -> bool:
    """Delete `key`; False if it was not there."""
    rc = lib().bpf_map_delete_elem(fd, key)
    if rc == -errno_mod.ENOENT:
        return False
    check(rc, "bpf_map_delete_elem")
    return True


def map_keys(fd: int, key_size: int, limit: int) -> list[bytes]:
    """Up to `limit` keys of a hash map (bounded walk)."""
    keys: list[bytes] = []
    prev: bytes | None = None
    nxt = ctypes.create_string_buffer(key_size)
    while len(keys) < limit:
        rc = lib().bpf_map_get_next_key(fd, prev, nxt)
        if rc == -errno_mod.ENOENT:
            break
        check(rc, "bpf_map_get_next_key")
        prev = nxt.raw
        keys.append(prev)
    return keys


def test_run(prog_fd: int, data: bytes | None = None, ctx: bytes | None = None, repeat: int = 0) -> TestRunResult:
    """BPF_PROG_TEST_RUN: run the program in the kernel on `data` / `ctx`.

    `repeat` > 1 runs it that many times and reports the mean duration (XDP/skb programs only; raw
    tracepoint programs take no data and must be run with repeat 0, once per call).
    """
    opts = TestRunOpts()
    opts.sz = ctypes.sizeof(TestRunOpts)
    keep: list[object] = []
    out = ctypes.create_string_buffer(max(len(data or b"") + 256, 64))
    if data is not None:
        din = ctypes.create_string_buffer(data, len(data))
        keep.append(din)
        opts.data_in = ctypes.cast(din, ctypes.c_void_p)
        opts.data_size_in = len(data)
        opts.data_out = ctypes.cast(out, ctypes.c_void_p)
        opts.data_size_out = len(out)
    if ctx is not None:
        cin = ctypes.create_string_buffer(ctx, len(ctx))
        keep.append(cin)
        opts.ctx_in = ctypes.cast(cin, ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)
    opts.repeat = repeat
    check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
    return TestRunResult(opts.retval, opts.duration, out.raw[: opts.data_size_out] if data is not None else b"")


def obj_info(fd: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    ln = ctypes.c_uint32(size)
    check(lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(ln)), "bpf_obj_get_info_by_fd")
    return buf.raw


def prog_ids() -> list[int]:
    ids: list[int] = []
    cur = ctypes.c_uint32(0)
    while True:
        rc = lib().bpf_prog_get_next_id(cur.value, ctypes.byref(cur))
        if rc < 0:
            break
        ids.append(cur.value)
    return ids


def prog_fd_by_id(prog_id: int) -> int:
    return check(lib().bpf_prog_get_fd_by_id(prog_id), f"bpf_prog_get_fd_by_id({prog_id})")


def map_fd_by_id(map_id: int) -> int:
    return check(lib().bpf_map_get_fd_by_id(map_id), f"bpf_map_get_fd_by_id({map_id})")


def obj_get(path: str) -> int:
    return check(lib().bpf_obj_get(path.encode()), f"bpf_obj_get({path})")


def enable_run_stats() -> int:
    """Turn on kernel run-time stats while the returned fd stays open (BPF_ENABLE_STATS)."""
    return check(lib().bpf_enable_stats(BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")
