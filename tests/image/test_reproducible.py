"""Reproducible root slots: a second build of x86_64 from the same inputs (same commit, same package lock,
the cached bootstrap and wheels) in another work directory gives a byte-identical root squashfs, and the
same bill of materials. The first build is the one the other image tests use; the second costs one
cached build (about 1-3 minutes here: install, trim, squash)."""

from __future__ import annotations

import time

from image import pipeline
from image.cache import sha256_file
from tests.image.conftest import built

BOARD = "x86_64"


def test_two_builds_give_identical_root_slots(tmp_path, artifacts_dir) -> None:
    first = built(BOARD)
    start = time.monotonic()
    second = pipeline.build(BOARD, work=tmp_path / "work", out=tmp_path / "out", echo=False)
    seconds = time.monotonic() - start
    a, b = sha256_file(first.squashfs), sha256_file(second.squashfs)
    (artifacts_dir / "root-slot.txt").write_text(
        f"first  {a}  {first.squashfs}\nsecond {b}  {second.squashfs}\nsecond build {seconds:.0f} s\n"
        f"SOURCE_DATE_EPOCH {second.source_date_epoch}\n")
    assert first.source_date_epoch == second.source_date_epoch and first.version == second.version
    assert a == b, f"root slots differ: {a} vs {b} (see {artifacts_dir})"
    assert (first.out / "sbom.cdx.json").read_bytes() == (second.out / "sbom.cdx.json").read_bytes()
