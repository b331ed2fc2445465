"""Step `sbom`: the image's bill of materials, CycloneDX 1.5 JSON (https://cyclonedx.org/specification/overview/).

One component per installed Debian package (dpkg's status) and per Python distribution in
/usr/lib/x0node (its dist-info METADATA), each with its version, a package URL (purl: pkg:deb/debian/...,
pkg:pypi/...) and its licences; the image itself is `metadata.component` (type firmware), and the apt
sources and package lock it was built from are properties. Written to the root
(/usr/share/x0tta6bl4/sbom.cdx.json, served by the web UI's Firmware page) and beside manifest.json.

Licences:
- Debian: /usr/share/doc/<package>/copyright (kept in the image for this; a symlinked doc directory is
  followed). A machine-readable (DEP-5) file gives every `License:` short name of its Files paragraphs;
  another file gives the /usr/share/common-licenses/<name> it refers to. Debian short names with an exact
  SPDX equivalent become SPDX ids, others stay names. A file that names nothing gives the name
  `LicenseRef-see-copyright` and the component points at the file (never a guess).
- Python: PEP 639 `License-Expression`, else the trove classifiers, else a short `License` field.

Rules: the output depends only on the root's content and SOURCE_DATE_EPOCH (the timestamp; the serial
number is a UUID derived from the components), so two builds of the same inputs give the same bytes.
It runs before `trim`, which empties /var with dpkg's status: a package partly trimmed is still listed.
"""

from __future__ import annotations

import datetime
import email.parser
import hashlib
import json
import pathlib
import re
import urllib.parse
import uuid
from typing import Any

from image.lock import installed

SBOM_NAME = "sbom.cdx.json"
DEVICE_SBOM = "usr/share/x0tta6bl4/" + SBOM_NAME
SITE_DIR = "usr/lib/x0node"
SPEC_VERSION = "1.5"
SEE_COPYRIGHT = "LicenseRef-see-copyright"
# Debian copyright short names (https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/) with
# an exact SPDX identifier.
DEBIAN_TO_SPDX = {
    "GPL-1": "GPL-1.0-only", "GPL-1+": "GPL-1.0-or-later", "GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later",
    "GPL-3": "GPL-3.0-only", "GPL-3+": "GPL-3.0-or-later", "LGPL-2": "LGPL-2.0-only", "LGPL-2+": "LGPL-2.0-or-later",
    "LGPL-2.1": "LGPL-2.1-only", "LGPL-2.1+": "LGPL-2.1-or-later", "LGPL-3": "LGPL-3.0-only",
    "LGPL-3+": "LGPL-3.0-or-later", "AGPL-3": "AGPL-3.0-only", "AGPL-3+": "AGPL-3.0-or-later",
    "GFDL-1.2": "GFDL-1.2-only", "GFDL-1.2+": "GFDL-1.2-or-later", "GFDL-1.3": "GFDL-1.3-only",
    "GFDL-1.3+": "GFDL-1.3-or-later", "Apache-2.0": "Apache-2.0", "Apache-2": "Apache-2.0",
    "Artistic-2.0": "Artistic-2.0", "BSD-2-clause": "BSD-2-Clause", "BSD-3-clause": "BSD-3-Clause",
    "BSD-4-clause": "BSD-4-Clause", "Expat": "MIT", "MIT": "MIT", "ISC": "ISC", "Zlib": "Zlib", "zlib": "Zlib",
    "MPL-1.1": "MPL-1.1", "MPL-2.0": "MPL-2.0", "PSF-2": "PSF-2.0", "Python-2.0": "Python-2.0",
    "CC0-1.0": "CC0-1.0", "CC0": "CC0-1.0", "OpenSSL": "OpenSSL", "curl": "curl", "Unicode-DFS-2016":
    "Unicode-DFS-2016", "BSL-1.0": "BSL-1.0", "0BSD": "0BSD", "X11": "X11", "FTL": "FTL", "LPPL-1.3c": "LPPL-1.3c",
}
# /usr/share/common-licenses/<file> -> Debian short name
COMMON_LICENSES = {"GPL": "GPL-1+", "GPL-1": "GPL-1", "GPL-2": "GPL-2", "GPL-3": "GPL-3", "LGPL": "LGPL-2+",
                   "LGPL-2": "LGPL-2", "LGPL-2.1": "LGPL-2.1", "LGPL-3": "LGPL-3", "Apache-2.0": "Apache-2.0",
                   "Artistic": "Artistic", "BSD": "BSD-3-clause", "GFDL": "GFDL-1.3+", "GFDL-1.2": "GFDL-1.2",
                   "GFDL-1.3": "GFDL-1.3", "MPL-1.1": "MPL-1.1", "MPL-2.0": "MPL-2.0", "CC0-1.0": "CC0-1.0"}
# Trove classifier (after "License :: OSI Approved :: ") -> SPDX
CLASSIFIER_TO_SPDX = {
    "MIT License": "MIT", "BSD License": "BSD-3-Clause", "Apache Software License": "Apache-2.0",
    "ISC License (ISCL)": "ISC", "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0", "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL-2.0-or-later",
}
SPDX_IDS = frozenset(DEBIAN_TO_SPDX.values()) | frozenset(CLASSIFIER_TO_SPDX.values()) | {"MIT-0", "Unlicense"}
_EXPR_RE = re.compile(r"^[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)+$")
_COMMON_RE = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9.+_-]+)")
MAX_COPYRIGHT_BYTES = 2 * 1024 * 1024


def _licence(name: str) -> dict[str, Any]:
    spdx = DEBIAN_TO_SPDX.get(name)
    return {"license": {"id": spdx}} if spdx else {"license": {"name": name}}


def debian_licences(rootfs: pathlib.Path, package: str, source: str) -> tuple[list[dict[str, Any]], str]:
    """(CycloneDX licences, the copyright file's path on the device)."""
    doc = rootfs / "usr/share/doc"
    path = next((doc / n / "copyright" for n in (package, source) if (doc / n / "copyright").is_file()), None)
    if path is None:
        return [{"license": {"name": SEE_COPYRIGHT}}], ""
    device_path = "/" + str(path.resolve().relative_to(rootfs.resolve()))
    with open(path, "rb") as f:
        text = f.read(MAX_COPYRIGHT_BYTES).decode("utf-8", "replace")
    names: list[str] = []
    if text.startswith("Format:") or "copyright-format" in text[:400]:
        for para in re.split(r"\n\s*\n", text):
            m = re.search(r"^License:[ \t]*(\S[^\n]*)", para, re.M)
            if m and re.search(r"^Files:", para, re.M):
                names.append(m.group(1).strip())
    else:
        names += [COMMON_LICENSES.get(n.rstrip("."), n.rstrip(".")) for n in _COMMON_RE.findall(text)]
    seen: list[str] = []
    for expr in names:  # "GPL-2+ or LGPL-2.1+" and "A and B": each short name once
        for part in re.split(r"\s+(?:or|and|with)\s+|[,()]", expr, flags=re.I):
            part = part.strip()
            if part and part not in seen and len(part) <= 64:
                seen.append(part)
    return ([_licence(n) for n in seen] or [{"license": {"name": SEE_COPYRIGHT}}]), device_path


def python_licences(meta: email.message.Message) -> list[dict[str, Any]]:
    expr = meta.get("License-Expression")
    if expr:
        return [{"expression": expr.strip()}]
    out = []
    for c in meta.get_all("Classifier") or []:
        if c.startswith("License :: "):
            name = c.split(" :: ")[-1].strip()
            spdx = CLASSIFIER_TO_SPDX.get(name)
            out.append({"license": {"id": spdx} if spdx else {"name": name}})
    lic = (meta.get("License") or "").strip()
    if not out and lic and "\n" not in lic and len(lic) <= 64:
        if lic in SPDX_IDS:
            out.append({"license": {"id": lic}})
        elif _EXPR_RE.match(lic):
            return [{"expression": lic}]
        else:
            out.append({"license": {"name": lic}})
    return out or [{"license": {"name": "LicenseRef-unknown"}}]


def _purl_version(v: str) -> str:
    return urllib.parse.quote(v, safe=".-_~")


def debian_components(rootfs: pathlib.Path, arch: str) -> list[dict[str, Any]]:
    out = []
    for key, f in installed((rootfs / "var/lib/dpkg/status").read_text()).items():
        name, version = f["Package"], f.get("Version", "")
        source = f.get("Source", name).split(" ", 1)[0]
        pkg_arch = f.get("Architecture", arch)
        licences, copyright_path = debian_licences(rootfs, name, source)
        purl = f"pkg:deb/debian/{name}@{_purl_version(version)}?arch={pkg_arch}&distro=debian-12"
        comp: dict[str, Any] = {"type": "library" if name.startswith("lib") else "application", "bom-ref": purl,
                                "name": name, "version": version, "purl": purl, "licenses": licences,
                                "properties": [{"name": "x0tta6bl4:debian:source", "value": source},
                                               {"name": "x0tta6bl4:debian:key", "value": key}]}
        if copyright_path:
            comp["properties"].append({"name": "x0tta6bl4:debian:copyright", "value": copyright_path})
        out.append(comp)
    return out


def python_components(rootfs: pathlib.Path) -> list[dict[str, Any]]:
    out = []
    for dist in sorted((rootfs / SITE_DIR).glob("*.dist-info")):
        meta_path = dist / "METADATA"
        if not meta_path.is_file():
            continue
        meta = email.parser.Parser().parsestr(meta_path.read_text(errors="replace"), headersonly=True)
        name, version = meta.get("Name", ""), meta.get("Version", "")
        norm = re.sub(r"[-_.]+", "-", name).lower()
        purl = f"pkg:pypi/{norm}@{_purl_version(version)}"
        out.append({"type": "library" if norm != "x0node" else "application", "bom-ref": purl, "name": name,
                    "version": version, "purl": purl, "licenses": python_licences(meta)})
    return out


def document(rootfs: pathlib.Path, board: str, architecture: str, version: str, source_date_epoch: int,
             properties: list[tuple[str, str]]) -> dict[str, Any]:
    components = debian_components(rootfs, architecture) + python_components(rootfs)
    digest = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()
    stamp = datetime.datetime.fromtimestamp(source_date_epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'x0tta6bl4:{board}:{version}:{digest}')}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {"components": [{"type": "application", "name": "x0tta6bl4 image/sbom.py"}]},
            "component": {"type": "firmware", "bom-ref": f"x0tta6bl4-{board}", "name": f"x0tta6bl4-{board}",
                          "version": version},
            "properties": [{"name": n, "value": v} for n, v in properties],
        },
        "components": components,
    }


def schema_errors(doc: dict[str, Any]) -> list[str] | None:
    """Errors against the official CycloneDX 1.5 JSON schema (as shipped in cyclonedx-python-lib, a
    test dependency, with jsonschema_rs), [] when valid; None when those are not installed."""
    try:
        import cyclonedx
        import jsonschema_rs
    except ImportError:
        return None
    res = pathlib.Path(cyclonedx.__file__).parent / "schema" / "_res"
    schema = json.loads((res / f"bom-{SPEC_VERSION}.SNAPSHOT.schema.json").read_text())

    def retrieve(uri: str) -> Any:  # the schema's own relative references (spdx, jsf), from the same folder
        return json.loads((res / uri.rsplit("/", 1)[-1]).read_text())

    validator = jsonschema_rs.validator_for(schema, retriever=retrieve, validate_formats=True)
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def write(doc: dict[str, Any], *paths: pathlib.Path) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
