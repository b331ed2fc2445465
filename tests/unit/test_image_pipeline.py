"""`make run` keeps an image only when a complete build from the same sources left it
(image.pipeline.reusable / inputs_digest)."""

from __future__ import annotations

import json
import pathlib

import pytest

from image import pipeline


@pytest.fixture
def tree(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setattr(pipeline, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("X0_IMAGE_VERSION", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    (tmp_path / "x0node").mkdir()
    (tmp_path / "x0node" / "core.py").write_text("A = 1\n")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "unit.service").write_text("[Unit]\n")
    (tmp_path / "requirements.lock").write_text("x==1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    return tmp_path


def _complete_build(root: pathlib.Path, board: str = "x86_64", size: int = 4096) -> pathlib.Path:
    out = root / "out" / board
    out.mkdir(parents=True)
    disk = out / f"x0-{board}-1.0-gabc.img"
    disk.write_bytes(b"\0" * size)
    (out / "manifest.json").write_text(json.dumps({"image": disk.name, "artefacts": {disk.name: {"bytes": size}}}))
    (out / pipeline.INPUTS_FILE).write_text(json.dumps({"inputs": pipeline.inputs_digest(board)}))
    return disk


def test_an_image_built_from_the_same_sources_is_kept(tree: pathlib.Path) -> None:
    disk = _complete_build(tree)
    assert pipeline.reusable("x86_64") == disk


def test_tests_and_docs_are_not_inputs(tree: pathlib.Path) -> None:
    disk = _complete_build(tree)
    (tree / "tests" / "test_a.py").write_text("assert True\n")
    (tree / "README.md").write_text("# new words\n")
    assert pipeline.reusable("x86_64") == disk


@pytest.mark.parametrize("change", ["code", "new file", "deleted file", "lock", "version", "bpf object", "no bpf"])
def test_a_changed_source_or_name_rebuilds(tree: pathlib.Path, change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bpf = tree / "build" / "bpf"
    bpf.mkdir(parents=True)
    (bpf / "xdp_a.bpf.o").write_bytes(b"\x7fELF one")
    _complete_build(tree)
    if change == "bpf object":  # rebuilt with other content
        (bpf / "xdp_a.bpf.o").write_bytes(b"\x7fELF two")
    elif change == "no bpf":  # a checkout that did not build them makes an image without them
        (bpf / "xdp_a.bpf.o").unlink()
    elif change == "code":
        (tree / "x0node" / "core.py").write_text("A = 2\n")
    elif change == "new file":
        (tree / "rootfs" / "other.conf").write_text("x\n")
    elif change == "deleted file":
        (tree / "rootfs" / "unit.service").unlink()
    elif change == "lock":
        (tree / "requirements.lock").write_text("x==2\n")
    else:
        monkeypatch.setenv("X0_IMAGE_VERSION", "2.0")
    assert pipeline.reusable("x86_64") is None


def test_an_incomplete_or_damaged_build_is_not_kept(tree: pathlib.Path) -> None:
    disk = _complete_build(tree)
    with open(disk, "ab") as f:
        f.write(b"\0")  # not the image the manifest describes
    assert pipeline.reusable("x86_64") is None
    disk.unlink()
    assert pipeline.reusable("x86_64") is None
    (tree / "out" / "x86_64" / pipeline.INPUTS_FILE).unlink()  # a build that stopped half-way removed it
    assert pipeline.reusable("x86_64") is None
    assert pipeline.reusable("arm64-virt") is None  # never built


def test_a_build_for_a_boot_leaves_out_only_the_bundle(tree: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `make run` (build --reuse --no-bundle): every step a boot needs runs, the update bundle does not,
    # and the build still counts as complete for reuse
    ran: list[str] = []
    monkeypatch.setattr(pipeline, "STEPS", {name: (lambda ctx, name=name: ran.append(name) or {})
                                            for name in pipeline.STEPS})
    monkeypatch.setattr(pipeline, "make_context", lambda board, work, out, refresh, comp: pipeline.Context(
        board=None, work=tree / "work", out=tree / "out", version="v", source_date_epoch=0))  # type: ignore[arg-type]
    (tree / "work").mkdir()
    (tree / "out").mkdir()
    pipeline.build("x86_64", echo=False, bundle=False)
    assert ran == [s for s in pipeline.STEPS if s != "bundle"] and "squash" in ran and "assemble" in ran
    assert json.loads((tree / "out" / pipeline.INPUTS_FILE).read_text())["inputs"] == pipeline.inputs_digest("x86_64")
    ran.clear()
    pipeline.build("x86_64", echo=False)
    assert ran == list(pipeline.STEPS)


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("X0_IMAGE_CACHE", str(root))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (tmp_path / "x0node" / "__init__.py").write_text('__version__ = "1.0"\n')
    return root


def test_a_new_checkout_of_the_same_sources_gets_the_finished_image_from_the_cache(
        tree: pathlib.Path, cache: pathlib.Path) -> None:
    disk = _complete_build(tree)
    disk.write_bytes(b"image bytes")
    manifest = json.loads((disk.parent / "manifest.json").read_text())
    manifest["artefacts"][disk.name]["bytes"] = len(b"image bytes")
    (disk.parent / "manifest.json").write_text(json.dumps(manifest))
    inputs = pipeline.inputs_digest("x86_64")
    assert pipeline.keep_finished("x86_64", disk.parent, inputs) is not None
    fresh = tree / "clone-out"
    assert pipeline.restore_finished("x86_64", fresh) == fresh / disk.name
    assert (fresh / disk.name).read_bytes() == b"image bytes"
    assert pipeline.reusable("x86_64", fresh) == fresh / disk.name
    (tree / "x0node" / "core.py").write_text("A = 2\n")  # other sources: nothing to copy
    assert pipeline.restore_finished("x86_64", tree / "other-out") is None
    assert not (tree / "other-out" / pipeline.INPUTS_FILE).exists()


def test_an_incomplete_build_is_never_kept_and_only_the_newest_entries_stay(
        tree: pathlib.Path, cache: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _complete_build(tree)
    with open(disk, "ab") as f:
        f.write(b"\0")
    assert pipeline.keep_finished("x86_64", disk.parent, pipeline.inputs_digest("x86_64")) is None
    disk.write_bytes(b"\0" * 4096)
    other = cache / f"{pipeline.FINISHED_PREFIX}x86_64-generic-{'0' * 24}"  # another board's entry
    other.mkdir(parents=True)
    kept = []
    for n in range(pipeline.KEEP_FINISHED + 2):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(1700000000 + n))  # a new commit time: a new image
        (disk.parent / pipeline.INPUTS_FILE).write_text(json.dumps({"inputs": pipeline.inputs_digest("x86_64")}))
        kept.append(pipeline.keep_finished("x86_64", disk.parent, pipeline.inputs_digest("x86_64")))
    left = sorted(p.name for p in cache.iterdir())
    assert left == sorted([other.name] + [p.name for p in kept[-pipeline.KEEP_FINISHED:]])  # type: ignore[union-attr]


def test_a_development_build_is_another_image_with_larger_slots(tree: pathlib.Path) -> None:
    # `make run` builds with a gzip root (build --compression gzip): not the router's xz image of the
    # same sources, so neither is kept for the other's inputs; its slots grow so the larger root fits
    disk = _complete_build(tree)
    assert pipeline.reusable("x86_64", compression="gzip") is None
    assert pipeline.reusable("x86_64") == disk
    assert pipeline.inputs_digest("x86_64", "gzip") != pipeline.inputs_digest("x86_64")
    board = pipeline.load_board("x86_64")
    dev = pipeline.board_for(board, "gzip")
    assert pipeline.board_for(board, "xz") is board
    assert dev.partitions.root_slot_mib == 150 and dev.partitions.esp_mib == board.partitions.esp_mib
    assert dev.squashfs_limit_mib == 150 and dev.disk_limit_mib == board.disk_limit_mib + 100
    assert dev.partitions.disk_mib <= dev.disk_limit_mib


def test_a_development_build_for_a_boot_takes_the_routers_image_of_the_same_sources(
        tree: pathlib.Path, cache: pathlib.Path) -> None:
    disk = _complete_build(tree)  # `make image` (xz) of these sources
    assert pipeline.reuse("x86_64", "gzip") == (disk, "built from the same sources")
    (tree / "x0node" / "core.py").write_text("A = 3\n")
    assert pipeline.reuse("x86_64", "gzip") is None


def test_a_development_build_makes_no_update_bundle(tree: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(pipeline, "STEPS", {name: (lambda ctx, name=name: ran.append(name) or {})
                                            for name in pipeline.STEPS})
    monkeypatch.setattr(pipeline, "make_context", lambda board, work, out, refresh, comp: pipeline.Context(
        board=None, work=tree / "work", out=tree / "out", version="v", source_date_epoch=0,  # type: ignore[arg-type]
        compression=comp))
    (tree / "work").mkdir()
    (tree / "out").mkdir()
    pipeline.build("x86_64", echo=False, compression="gzip")
    assert "bundle" not in ran and "squash" in ran
    assert json.loads((tree / "out" / pipeline.INPUTS_FILE).read_text())["inputs"] == pipeline.inputs_digest(
        "x86_64", "gzip")
