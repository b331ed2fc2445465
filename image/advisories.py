"""Published advisories against what an image ships: the pinned Python lock and the Debian package locks.

    python -m image.advisories python     # requirements.lock against PyPI's advisory data
    python -m image.advisories debian     # image/locks/*.json against the current bookworm-security

Python: pip-audit (pinned) audits requirements.lock with its PyPI service (PyPI's JSON API, per release)
and its OSV service; where both give no answer for a pin, PyPI's project JSON is read, whose
`vulnerabilities` list describes the project's newest release, so it counts only for a pin that is that
release. Each package's report says which source checked it; a withdrawn advisory does not count.
Debian: the security suite's Packages index is fetched with apt-get (signature checked against Debian's
keyring) into a private directory, and a locked package older than the same package in the suite is an
outdated package (version order from `dpkg --compare-versions`).

Offline behaviour (what `make test` does without a network): a source that cannot be reached is recorded
as unreachable with the reason; the tests skip when no source answered and fail only on a finding.
Answers are cached (X0_ADVISORY_CACHE, default ~/.cache/x0tta6bl4/advisories) for CACHE_TTL_S keyed by
the lock's content, so repeated test runs do not ask again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from image import lock as locks
from image.board import REPO_ROOT

CACHE_TTL_S = 6 * 3600
HTTP_TIMEOUT_S = 20
PIP_AUDIT_TIMEOUT_S = 300
APT_TIMEOUT_S = 180
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PYTHON_LOCK = REPO_ROOT / "requirements.lock"
_PIN_RE = re.compile(r"^([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)$")


def cache_dir() -> pathlib.Path:
    env = os.environ.get("X0_ADVISORY_CACHE")
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(env) if env else pathlib.Path(base) / "x0tta6bl4" / "advisories"


def _cached(name: str, make: Any) -> dict[str, Any]:
    path = cache_dir() / name
    if path.exists() and time.time() - path.stat().st_mtime < CACHE_TTL_S:
        return json.loads(path.read_text())
    result = make()
    if any(v == "reachable" for v in result.get("sources", {}).values()):  # never cache "all unreachable"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
        tmp.replace(path)
    return result


# --- Python ------------------------------------------------------------------------------------------

def python_pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        m = _PIN_RE.match(line.strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


@dataclass
class PackageReport:
    version: str
    checked_by: list[str] = field(default_factory=list)
    vulns: list[dict[str, Any]] = field(default_factory=list)


def _pip_audit(lock_path: pathlib.Path, service: str) -> tuple[dict[str, Any] | None, str]:
    """(pip-audit's JSON, '') or (None, why it gave nothing)."""
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(lock_path), "--no-deps", "--disable-pip",
           "--progress-spinner", "off", "-f", "json", "-s", service, "--cache-dir", str(cache_dir() / "pip-audit")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_AUDIT_TIMEOUT_S)  # nosec B603 - fixed argv
    except subprocess.TimeoutExpired:
        return None, f"pip-audit -s {service} timed out"
    try:
        return json.loads(proc.stdout), ""
    except ValueError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, last[:300]


def _project_json(name: str) -> dict[str, Any]:
    url = PYPI_PROJECT_JSON.format(name=name)
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:  # nosec B310 - fixed https URL
        return json.loads(r.read(16 * 1024 * 1024))


def audit_python(lock_path: pathlib.Path = PYTHON_LOCK) -> dict[str, Any]:
    pins = python_pins(lock_path.read_text())
    report = {name: PackageReport(version) for name, version in pins.items()}
    sources: dict[str, str] = {}
    for service in ("pypi", "osv"):
        data, why = _pip_audit(lock_path, service)
        if data is None:
            sources[f"pip-audit/{service}"] = f"unreachable: {why}"
            continue
        answered = 0
        for dep in data.get("dependencies", []):
            name = re.sub(r"[-_.]+", "-", str(dep.get("name", ""))).lower()
            if name not in report or "skip_reason" in dep:
                continue
            answered += 1
            report[name].checked_by.append(f"pip-audit/{service}")
            for v in dep.get("vulns", []):
                report[name].vulns.append({"id": v.get("id"), "fix_versions": v.get("fix_versions", []),
                                           "source": f"pip-audit/{service}"})
        skipped = [d for d in data.get("dependencies", []) if "skip_reason" in d]
        sources[f"pip-audit/{service}"] = ("reachable" if answered else
                                           f"unreachable: no release answered ({len(skipped)} skipped, e.g. "
                                           f"{skipped[0]['skip_reason'] if skipped else 'none'})")
    answered_json = 0
    errors = []
    for name, rep in report.items():
        if rep.checked_by:
            continue
        try:
            proj = _project_json(name)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
            if len(errors) >= 3 and not answered_json:
                break  # the source is down; do not ask for every package
            continue
        answered_json += 1
        if proj.get("info", {}).get("version") != rep.version:
            continue  # the project JSON describes another release: no answer for this pin
        rep.checked_by.append("pypi/project-json")
        for v in proj.get("vulnerabilities") or []:
            if not v.get("withdrawn"):
                rep.vulns.append({"id": v.get("id"), "aliases": v.get("aliases", []),
                                  "fix_versions": v.get("fixed_in", []), "source": "pypi/project-json"})
    sources["pypi/project-json"] = "reachable" if answered_json else f"unreachable: {'; '.join(errors[:3]) or 'not asked'}"
    return {"lock": str(lock_path.name), "lock_sha256": hashlib.sha256(lock_path.read_bytes()).hexdigest(),
            "sources": sources,
            "packages": {n: {"version": r.version, "checked_by": r.checked_by, "vulns": r.vulns}
                         for n, r in sorted(report.items())}}


def python_report(lock_path: pathlib.Path = PYTHON_LOCK) -> dict[str, Any]:
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()[:16]
    return _cached(f"python-{digest}.json", lambda: audit_python(lock_path))


# --- Debian ------------------------------------------------------------------------------------------

def security_index(arches: list[str]) -> dict[str, Any]:
    """{"sources": {...}, "packages": {arch: {name: version}}} of bookworm-security main, via apt-get."""
    source = f"apt/{locks.SECURITY_SUITE}"
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        for sub in ("lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d"):
            (d / sub).mkdir(parents=True)
        (d / "etc/sources.list").write_text(
            f"deb [signed-by={KEYRING}] {locks.SECURITY_MIRROR} {locks.SECURITY_SUITE} main\n")
        opts = [f"-oDir::Etc={d / 'etc'}", "-oDir::Etc::sourceparts=-", f"-oDir::State::Lists={d / 'lists'}",
                f"-oDir::Cache={d / 'cache'}", "-oDir::State::status=/dev/null", "-oDebug::NoLocking=1",
                "-oAcquire::GzipIndexes=false", "-oAcquire::Languages=none", "-oAcquire::Retries=1",
                f"-oAPT::Architecture={arches[0]}", *[f"-oAPT::Architectures::={a}" for a in arches]]
        try:
            proc = subprocess.run(["apt-get", "-q", *opts, "update"], capture_output=True, text=True,  # nosec B603 B607 - fixed argv
                                  timeout=APT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"sources": {source: f"unreachable: {exc}"}, "packages": {}}
        index: dict[str, dict[str, str]] = {}
        for arch in arches:
            files = list((d / "lists").glob(f"*bookworm-security_main_binary-{arch}_Packages"))
            if not files:
                continue
            pk: dict[str, str] = {}
            for para in locks.parse_control(files[0].read_text(errors="replace")):
                if "Package" in para and "Version" in para:
                    old = pk.get(para["Package"])
                    if old is None or newer(para["Version"], old):
                        pk[para["Package"]] = para["Version"]
            index[arch] = pk
        if not index or proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no index"])[-1][:300]
            return {"sources": {source: f"unreachable: {why}"}, "packages": {}}
    return {"sources": {source: "reachable"}, "packages": index, "fetched_at": int(time.time())}


def newer(a: str, b: str) -> bool:
    """Debian version a > b (dpkg's own ordering)."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0  # nosec B603 B607 - fixed argv


def outdated(lock: locks.Lock, index: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Locked packages with a newer version in the security suite."""
    out = []
    for key, version in sorted(lock.packages.items()):
        name, _, arch = key.partition(":")
        for a in ([arch] if arch else list(index)):
            sec = index.get(a, {}).get(name)
            if sec is not None and newer(sec, version):
                out.append({"package": key, "locked": version, "security": sec})
                break
    return out


def debian_report(lock_files: list[pathlib.Path] | None = None) -> dict[str, Any]:
    files = lock_files if lock_files is not None else sorted(locks.LOCK_DIR.glob("*.json"))
    lock_list = [lk for lk in (locks.read_lock(f) for f in files) if lk is not None]
    arches = sorted({lk.architecture for lk in lock_list}) or ["amd64"]
    index = _cached(f"debian-security-{'-'.join(arches)}.json", lambda: security_index(arches))
    return {"sources": index["sources"],
            "locks": {lk.board: outdated(lk, index["packages"]) for lk in lock_list} if index["packages"] else {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.advisories", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("python", "debian"))
    args = parser.parse_args(argv)
    report = python_report() if args.what == "python" else debian_report()
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    if args.what == "python":
        bad = {n: p["vulns"] for n, p in report["packages"].items() if p["vulns"]}
    else:
        bad = {b: v for b, v in report["locks"].items() if v}
    return 1 if bad else 0


if __name__ == "__main__":
    if shutil.which("dpkg") is None:
        print("dpkg is needed for Debian version ordering", file=sys.stderr)
    sys.exit(main())
