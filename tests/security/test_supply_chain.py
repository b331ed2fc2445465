"""Security scans in CI (`make test`): Bandit over x0node/, the pinned Python lock against published
advisories, and every board's Debian package lock against the current bookworm-security suite.

Network: the advisory checks ask PyPI and Debian's archive (image.advisories, cached for hours). A
source that cannot be reached is reported by name; with no source answering a check is skipped with
that reason (offline runs stay green), and a check fails only on a finding: a known vulnerability in a
pinned release, or a locked Debian package older than the security suite's (refresh the lock:
`make image LOCK=refresh BOARD=<board>`). Each report is kept under test-artifacts/."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from image import advisories
from image.board import REPO_ROOT

# Bandit: every finding is fixed or justified inline (`# <why> # nosec <id>`). B101 (assert) is the one
# check skipped as a whole: asserts here state invariants (mostly type narrowing), and they are never
# stripped, because the device runs Python without -O (checked below on the image's launcher).
BANDIT_SKIP = ("B101",)


def _keep(artifacts_dir: pathlib.Path, name: str, data: object) -> None:
    (artifacts_dir / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def test_bandit_finds_nothing_unjustified(artifacts_dir) -> None:
    from image.payload import _LAUNCHER_TEXT

    assert _LAUNCHER_TEXT.startswith("#!/usr/bin/python3 -I\n")  # no -O: asserts stay on the device
    proc = subprocess.run([sys.executable, "-m", "bandit", "-r", "x0node", "-s", ",".join(BANDIT_SKIP), "-f", "json", "-q"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    report = json.loads(proc.stdout)
    _keep(artifacts_dir, "bandit.json", report)
    assert report["metrics"]["_totals"]["loc"] > 1000  # it did scan the package
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert not findings, "Bandit findings (fix, or justify inline with `# <why> # nosec <id>`):\n" + "\n".join(findings)
    assert not report["errors"], report["errors"]


def _sources_line(sources: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(sources.items()))


def test_python_lock_has_no_published_advisory(artifacts_dir) -> None:
    report = advisories.python_report()
    _keep(artifacts_dir, "python-advisories.json", report)
    if not any(v == "reachable" for v in report["sources"].values()):
        pytest.skip(f"no advisory source reachable: {_sources_line(report['sources'])}")
    found = {n: p["vulns"] for n, p in report["packages"].items() if p["vulns"]}
    assert not found, f"pinned releases with published advisories: {found}"
    unchecked = sorted(n for n, p in report["packages"].items() if not p["checked_by"])
    print(f"advisory sources: {_sources_line(report['sources'])}; "
          f"{len(report['packages']) - len(unchecked)} of {len(report['packages'])} pins checked; "
          f"no source answered for: {', '.join(unchecked) or 'none'}")


def test_debian_locks_are_not_older_than_the_security_suite(artifacts_dir) -> None:
    report = advisories.debian_report()
    _keep(artifacts_dir, "debian-security.json", report)
    if not any(v == "reachable" for v in report["sources"].values()):
        pytest.skip(f"security suite unreachable: {_sources_line(report['sources'])}")
    assert report["locks"], "no board lock in image/locks"
    stale = {board: pkgs for board, pkgs in report["locks"].items() if pkgs}
    assert not stale, ("locked packages older than bookworm-security (refresh with "
                       f"`make image LOCK=refresh BOARD=<board>`): {stale}")
