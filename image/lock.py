"""The Debian side of an image's inputs: the apt sources it is built from and the package lock.

Sources are explicit (never the build host's apt configuration): `bookworm`, `bookworm-updates` and
`bookworm-security` from deb.debian.org with the board's components. The lock (`image/locks/<board>.json`)
names every installed package with its exact version, the sources with the date of each suite's signed
Release file when the lock was made, and that newest date as the bootstrap's SOURCE_DATE_EPOCH.

Rules:
- A build with a lock pins every package to its locked version (apt preferences, priority 1001) and then
  checks that the installed set is exactly the lock; any difference fails the build naming the packages
  (e.g. a locked version the archive no longer carries: refresh the lock).
- A lock is made or replaced only on purpose (`make image LOCK=refresh`, or a board without a lock yet):
  the bootstrap then resolves the newest versions of the three suites and the result becomes the lock.
- The lock file is written sorted, one package per line, so a refresh shows as a readable diff.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any

from image.board import REPO_ROOT, Board

LOCK_DIR = REPO_ROOT / "image" / "locks"
LOCK_FORMAT = 1
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "bookworm"
SECURITY_SUITE = f"{SUITE}-security"
# (archive URI, suite): the release, its stable updates and its security updates.
SOURCES = ((DEBIAN_MIRROR, SUITE), (DEBIAN_MIRROR, f"{SUITE}-updates"), (SECURITY_MIRROR, SECURITY_SUITE))
RELEASE_DIR = "var/lib/x0-bootstrap"  # where the bootstrap keeps the suites' InRelease files (in /var)
_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:-]{1,128}$")


class LockError(RuntimeError):
    """The lock does not match what was installed, or the lock file is unusable."""


def source_lines(board: Board) -> list[str]:
    """One-line apt sources, as mmdebstrap takes them."""
    comps = " ".join(board.components)
    return [f"deb {uri} {suite} {comps}" for uri, suite in SOURCES]


def lock_path(board: Board) -> pathlib.Path:
    return LOCK_DIR / f"{board.name}.json"


@dataclass(frozen=True)
class Lock:
    board: str
    architecture: str
    sources: tuple[dict[str, Any], ...]
    packages: dict[str, str]
    source_date_epoch: int

    def digest(self) -> str:
        """What determines the bootstrap's content: the package set and the sources' lines."""
        canon = json.dumps({"packages": self.packages, "sources": [s["line"] for s in self.sources]}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps({"format": LOCK_FORMAT, "board": self.board, "architecture": self.architecture,
                           "source_date_epoch": self.source_date_epoch, "sources": list(self.sources),
                           "packages": dict(sorted(self.packages.items()))}, indent=1) + "\n"


def read_lock(path: pathlib.Path) -> Lock | None:
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != LOCK_FORMAT:
            raise LockError(f"{path}: lock format {raw.get('format')!r}, expected {LOCK_FORMAT}")
        packages = {str(k): str(v) for k, v in raw["packages"].items()}
        for name, version in packages.items():
            if not re.match(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?$", name) or not _VERSION_RE.match(version):
                raise LockError(f"{path}: bad entry {name!r}: {version!r}")
        return Lock(str(raw["board"]), str(raw["architecture"]), tuple(raw["sources"]), packages,
                    int(raw["source_date_epoch"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockError(f"{path}: not a usable lock ({exc}); refresh it with `make image LOCK=refresh`") from None


def write_lock(path: pathlib.Path, lock: Lock) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(lock.to_json())
    tmp.replace(path)


def preferences(lock: Lock) -> str:
    """apt_preferences(5) pinning every locked package to its version."""
    out = ["# x0tta6bl4 package lock: every package at its locked version (image/lock.py)."]
    for name, version in sorted(lock.packages.items()):
        out += ["", f"Package: {name.split(':', 1)[0]}", f"Pin: version {version}", "Pin-Priority: 1001"]
    return "\n".join(out) + "\n"


def parse_control(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 file (dpkg status, Packages, Release) as {field: value}; continuation lines
    are joined with newlines."""
    paras: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, last = {}, ""
        elif line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
        elif ":" in line:
            k, _, v = line.partition(":")
            last = k.strip()
            cur[last] = v.strip()
    if cur:
        paras.append(cur)
    return paras


def installed(status_text: str) -> dict[str, dict[str, str]]:
    """{name[:arch]: fields} of installed packages from a dpkg status file (arch only when not `all`)."""
    out: dict[str, dict[str, str]] = {}
    for fields in parse_control(status_text):
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            out[fields["Package"] + (f":{arch}" if arch not in ("all", "") else "")] = fields
    return dict(sorted(out.items()))


def release_info(rootfs: pathlib.Path) -> list[dict[str, Any]]:
    """Suite, date and sha256 of each InRelease file the bootstrap kept (RELEASE_DIR)."""
    out = []
    for f in sorted((rootfs / RELEASE_DIR).glob("*_InRelease")):
        text = f.read_text(errors="replace")
        body = text.split("\n\n", 1)[1] if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----") else text
        fields = parse_control(body)[0] if body.strip() else {}
        date = fields.get("Date", "")
        epoch = int(email.utils.parsedate_to_datetime(date).timestamp()) if date else 0
        out.append({"suite": fields.get("Suite", ""), "codename": fields.get("Codename", ""), "date": date,
                    "epoch": epoch, "inrelease_sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "file": f.name})
    return out


def make_lock(board: Board, rootfs: pathlib.Path) -> Lock:
    """The lock describing a freshly bootstrapped root (resolved without pins)."""
    status = installed((rootfs / "var/lib/dpkg/status").read_text())
    releases = {r["codename"]: r for r in release_info(rootfs)}
    sources = []
    for line, (_uri, suite) in zip(source_lines(board), SOURCES, strict=True):
        rel = releases.get(suite)
        if rel is None:
            raise LockError(f"no Release file of {suite} after the bootstrap (is the archive reachable?)")
        sources.append({"line": line, "suite": suite, "release_date": rel["date"],
                        "inrelease_sha256": rel["inrelease_sha256"]})
    epoch = max(r["epoch"] for r in releases.values())
    return Lock(board.name, board.architecture, tuple(sources), {k: v["Version"] for k, v in status.items()}, epoch)


def check_installed(lock: Lock, rootfs: pathlib.Path) -> None:
    """Raise LockError naming every difference between the lock and the installed packages."""
    got = {k: v["Version"] for k, v in installed((rootfs / "var/lib/dpkg/status").read_text()).items()}
    problems = []
    for name in sorted(set(lock.packages) | set(got)):
        want, have = lock.packages.get(name), got.get(name)
        if want != have:
            problems.append(f"{name}: locked {want or '(absent)'}, installed {have or '(absent)'}")
    if problems:
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise LockError(f"the bootstrap does not match {lock.board}'s lock: {shown}. If the archive dropped a "
                        "locked version (a newer security update replaced it), refresh the lock: "
                        "`make image LOCK=refresh`")


def utc(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
