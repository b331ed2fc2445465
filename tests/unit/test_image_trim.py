"""The trim step's one edit inside files: DWARF sections leave the Python dependencies' shared objects
(image.trim.strip_debug); the objects still load, and files without such sections are not touched."""

from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess

import pytest

from image import trim

pytestmark = pytest.mark.skipif(not (shutil.which("clang") and shutil.which("llvm-strip")),
                                reason="needs clang and llvm-strip (make deps)")


def _shared_object(path: pathlib.Path, debug: bool) -> pathlib.Path:
    src = path.with_suffix(".c")
    src.write_text("int x0_answer(void) { return 42; }\n")
    subprocess.run(["clang", "-shared", "-fPIC", *(["-g"] if debug else []), "-o", str(path), str(src)], check=True)
    return path


def test_strip_debug_removes_dwarf_only_where_present(tmp_path: pathlib.Path) -> None:
    site = tmp_path / trim.STRIP_DEBUG_UNDER / "pkg"
    site.mkdir(parents=True)
    with_debug = _shared_object(site / "_ext.cpython-311-x86_64-linux-gnu.so", debug=True)
    without = _shared_object(site / "_plain.so", debug=False)
    (site / "mod.so.txt").write_text("not an ELF file\n")
    plain_bytes = without.read_bytes()
    assert trim.has_debug_sections(with_debug) and not trim.has_debug_sections(without)
    assert not trim.has_debug_sections(site / "mod.so.txt")

    result = trim.strip_debug(tmp_path)
    assert result["files"] == 1 and result["bytes_saved"] > 0
    assert not trim.has_debug_sections(with_debug)
    assert without.read_bytes() == plain_bytes
    assert ctypes.CDLL(str(with_debug)).x0_answer() == 42


def test_truncated_or_foreign_files_are_not_elf_with_debug(tmp_path: pathlib.Path) -> None:
    for name, data in (("empty.so", b""), ("short.so", b"\x7fELF\x02\x01"), ("big.so", b"\x7fELF\x02\x02" + b"\0" * 80),
                       ("junk.so", b"\x7fELF\x02\x01" + b"\xff" * 200)):
        (tmp_path / name).write_bytes(data)
        assert not trim.has_debug_sections(tmp_path / name), name
