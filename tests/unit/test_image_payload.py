"""image.payload: the wheel a router image installs holds x0node and nothing development-only."""

from __future__ import annotations

import zipfile

import pytest

from image.payload import build_wheel, dev_only_files


def test_dev_only_files_are_recognised() -> None:
    paths = [
        "x0node/daemon/node.py", "x0node/web/metrics.py", "x0node/anomaly/chain.py",
        "x0lab/__init__.py", "x0lab-0.1.0.dist-info/METADATA", "x0node/testbed/bed.py",
        "x0node/anomaly/scenarios.py",
    ]
    assert dev_only_files(paths) == [
        "x0lab-0.1.0.dist-info/METADATA", "x0lab/__init__.py", "x0node/anomaly/scenarios.py",
        "x0node/testbed/bed.py",
    ]


def test_router_wheel_has_no_testbed_or_scenario_modules(tmp_path) -> None:
    wheel = build_wheel(tmp_path, tmp_path / "log")
    names = zipfile.ZipFile(wheel).namelist()
    assert "x0node/daemon/node.py" in names and "x0node/anomaly/chain.py" in names
    assert "x0node/cli.py" in names and "x0node/anomaly/cli.py" in names
    assert dev_only_files(names) == []
    assert not any(n.startswith("x0lab") or "/testbed/" in n or n.endswith("scenarios.py") for n in names)


def test_stale_staged_modules_never_reach_the_wheel(tmp_path) -> None:
    from image.board import REPO_ROOT

    stale = REPO_ROOT / "build" / "lib" / "x0node" / "testbed" / "bed.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("left over from a build before the testbed moved to x0lab\n")
    try:
        names = zipfile.ZipFile(build_wheel(tmp_path, tmp_path / "log")).namelist()
    finally:
        if stale.exists():
            stale.unlink()
    assert "x0node/testbed/bed.py" not in names


def test_build_refuses_dev_only_files_in_the_wheel(tmp_path, monkeypatch) -> None:
    import image.payload as payload

    real = payload.subprocess.run

    def run_then_add_dev_file(cmd, **kw):
        out = real(cmd, **kw)
        for whl in (tmp_path / "wheel").glob("*.whl"):
            with zipfile.ZipFile(whl, "a") as zf:
                zf.writestr("x0lab/testbed/bed.py", "")
        return out

    monkeypatch.setattr(payload.subprocess, "run", run_then_add_dev_file)
    with pytest.raises(RuntimeError, match="development-only files"):
        build_wheel(tmp_path, tmp_path / "log")
