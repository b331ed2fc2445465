"""Admission control for BPF objects: only what the image manifest lists, within fixed limits.

Rules (checked in this order; every failure is reported, naming the object and the limit):
1. size: the file is at most OBJECT_MAX_BYTES;
2. integrity: its sha256 is one of the manifest's values ({"files": {path: sha256}}); the manifest is
   the image's (/usr/share/x0tta6bl4/manifest.json) on a device, build/bpf/manifest.json on a dev host.
   An object that fails here is refused at once: none of its bytes reach the ELF parser or libbpf;
3. ELF: a 64-bit little-endian EM_BPF object with a GPL-compatible `license` section, whose
   executable sections are all of an allowed program kind (XDP or tracepoints) and whose other
   sections are known;
4. programs: at most PROG_MAX_INSNS instructions each; maps: at most MAP_MAX_ENTRIES entries and
   MAP_MAX_BYTES of memory each (per-CPU maps count once per possible CPU).
The pure checks (`check_elf`, `check_contents`) take parsed data and a Policy; `validate_file` does the
I/O. A verifier refusal at load time is reported by the loader with the verifier log (see cli.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from x0node.telemetry import elf
from x0node.telemetry.loader import MapInfo, ProgInfo

OBJECT_MAX_BYTES = 2 * 1024 * 1024
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
PROG_MAX_INSNS = 4096
MAP_MAX_ENTRIES = 65536
MAP_MAX_BYTES = 16 * 1024 * 1024
DEVICE_MANIFEST = "/usr/share/x0tta6bl4/manifest.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV_MANIFEST = os.path.join(REPO_ROOT, "build", "bpf", "manifest.json")
GPL_COMPATIBLE = frozenset(
    {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}
)
PROG_SECTION_PREFIXES = ("xdp", "raw_tp/", "raw_tracepoint/", "tp/", "tracepoint/", "tp_btf/")
DATA_SECTIONS = frozenset(
    {"", ".strtab", ".symtab", ".maps", "license", ".BTF", ".BTF.ext", ".llvm_addrsig", ".rodata", ".data", ".bss"}
)
DATA_SECTION_PREFIXES = (".rel", ".debug_", ".rodata.", ".data.", ".bss.")


class ValidationError(Exception):
    """An object was refused; `problems` lists every reason."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path} refused: " + "; ".join(problems))
        self.path = path
        self.problems = problems


@dataclass(frozen=True)
class Policy:
    prog_max_insns: int = PROG_MAX_INSNS
    map_max_entries: int = MAP_MAX_ENTRIES
    map_max_bytes: int = MAP_MAX_BYTES
    object_max_bytes: int = OBJECT_MAX_BYTES


@dataclass(frozen=True)
class Report:
    path: str
    sha256: str
    license: str
    programs: tuple[ProgInfo, ...] = field(default=())
    maps: tuple[MapInfo, ...] = field(default=())


def default_manifest_path() -> str:
    env = os.environ.get("X0NODE_BPF_MANIFEST")
    if env:
        return env
    return DEVICE_MANIFEST if os.path.exists(DEVICE_MANIFEST) else DEV_MANIFEST


def load_manifest(path: str) -> frozenset[str]:
    """The set of allowed sha256 digests; raises ValueError with the reason if unreadable."""
    try:
        if os.path.getsize(path) > MANIFEST_MAX_BYTES:
            raise ValueError(f"manifest {path} is larger than {MANIFEST_MAX_BYTES} bytes")
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read manifest {path}: {exc}") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"manifest {path} has no 'files' object")
    return frozenset(v.lower() for v in files.values() if isinstance(v, str) and len(v) == 64)


def check_digest(digest: str, allowed: frozenset[str], manifest_path: str) -> list[str]:
    if digest not in allowed:
        return [f"sha256 {digest} is not in the manifest {manifest_path} (tampered or not built here)"]
    return []


def check_elf(obj: elf.ElfObject) -> list[str]:
    problems: list[str] = []
    if obj.machine != elf.EM_BPF:
        problems.append(f"ELF machine is {obj.machine}, not BPF ({elf.EM_BPF})")
    lic = obj.license()
    if lic is None:
        problems.append("no license section")
    elif lic not in GPL_COMPATIBLE:
        problems.append(f"license {lic!r} is not GPL-compatible")
    progs = 0
    for sec in obj.sections:
        if sec.executable:
            if sec.name == ".text":
                continue  # subprograms
            if sec.name.startswith(PROG_SECTION_PREFIXES):
                progs += 1
            else:
                problems.append(f"program section {sec.name!r} is not an allowed kind {PROG_SECTION_PREFIXES}")
        elif sec.name not in DATA_SECTIONS and not sec.name.startswith(DATA_SECTION_PREFIXES):
            problems.append(f"unexpected section {sec.name!r}")
    if progs == 0:
        problems.append("no program section")
    return problems


def map_bytes(m: MapInfo, ncpus: int) -> int:
    value = ((m.value_size + 7) // 8) * 8 * ncpus if m.percpu else m.value_size
    return (m.key_size + value) * m.max_entries


def check_contents(progs: list[ProgInfo], maps: list[MapInfo], policy: Policy, ncpus: int) -> list[str]:
    problems: list[str] = []
    for p in progs:
        if p.insn_count > policy.prog_max_insns:
            problems.append(f"program {p.name} has {p.insn_count} instructions (limit {policy.prog_max_insns})")
    for m in maps:
        if m.max_entries > policy.map_max_entries:
            problems.append(f"map {m.name} has {m.max_entries} entries (limit {policy.map_max_entries})")
        size = map_bytes(m, ncpus)
        if size > policy.map_max_bytes:
            problems.append(f"map {m.name} needs {size} bytes (limit {policy.map_max_bytes})")
    return problems


def validate_file(path: str, manifest_path: str | None = None, policy: Policy | None = None) -> Report:
    """Run every check on the object at `path`; raise ValidationError listing all problems."""
    from x0node.telemetry import libbpf
    from x0node.telemetry.loader import BpfObject

    policy = policy or Policy()
    manifest_path = manifest_path or default_manifest_path()
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ValidationError(path, [f"cannot read: {exc.strerror}"]) from exc
    if size > policy.object_max_bytes:
        raise ValidationError(path, [f"object is {size} bytes (limit {policy.object_max_bytes})"])
    with open(path, "rb") as fh:
        data = fh.read(policy.object_max_bytes + 1)
    digest = hashlib.sha256(data).hexdigest()
    try:
        allowed = load_manifest(manifest_path)
    except ValueError as exc:
        raise ValidationError(path, [str(exc)]) from exc
    problems = check_digest(digest, allowed, manifest_path)
    if problems:
        raise ValidationError(path, problems)  # not ours: never parsed
    try:
        parsed = elf.parse(data)
    except elf.ElfError as exc:
        raise ValidationError(path, [f"bad ELF: {exc}"]) from exc
    problems = check_elf(parsed)
    if problems:
        raise ValidationError(path, problems)
    obj = BpfObject(path, pin_root=None)
    try:
        progs, maps = obj.programs(), obj.map_infos()
    finally:
        obj.close()
    problems = check_contents(progs, maps, policy, libbpf.num_possible_cpus())
    if problems:
        raise ValidationError(path, problems)
    return Report(path, digest, parsed.license() or "", tuple(progs), tuple(maps))
