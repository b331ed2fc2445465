"""image.sbom: a CycloneDX 1.5 bill of materials from a root (dpkg status, copyright files, dist-info),
valid against the CycloneDX schema, the same bytes for the same inputs; the web UI's Firmware API serves
what it says and refuses a broken file."""

from __future__ import annotations

import json
import pathlib

from image import sbom
from tests.unit.test_web_support import PASSWORD, do_setup, fast_argon2, make_app  # noqa: F401
from x0node.web import firmware

STATUS = """Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.17-1~deb12u3

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-0+deb12u1

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: the authors
License: Apache-2.0

Files: crypto/foo.c
License: GPL-2+ or Artistic
"""


def make_root(tmp: pathlib.Path) -> pathlib.Path:
    root = tmp / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "usr/share/doc/openssl").mkdir(parents=True)
    (root / "usr/share/doc/openssl/copyright").write_text(DEP5)
    (root / "usr/share/doc/libssl3").symlink_to("openssl")
    (root / "usr/share/doc/tzdata").mkdir(parents=True)
    (root / "usr/share/doc/tzdata/copyright").write_text("This database is in the public domain.\n")
    dist = root / "usr/lib/x0node/aiohttp-3.14.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.4\nName: aiohttp\nVersion: 3.14.5\n"
                                   "License-Expression: Apache-2.0 AND MIT\n\nlong text\n")
    dist = root / "usr/lib/x0node/PyNaCl-1.6.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: PyNaCl\nVersion: 1.6.2\n"
                                   "Classifier: License :: OSI Approved :: Apache Software License\n")
    return root


def test_components_versions_and_licences(tmp_path):
    doc = sbom.document(make_root(tmp_path), "x86_64", "amd64", "0.1.0-gabc", 1700000000,
                        [("x0tta6bl4:debian:source", "deb http://deb.debian.org/debian bookworm main")])
    by_name = {c["name"]: c for c in doc["components"]}
    assert set(by_name) == {"libssl3", "tzdata", "aiohttp", "PyNaCl"}  # not the deinstalled package
    ssl = by_name["libssl3"]
    assert ssl["version"] == "3.0.17-1~deb12u3"
    assert ssl["purl"] == "pkg:deb/debian/libssl3@3.0.17-1~deb12u3?arch=amd64&distro=debian-12"
    assert ssl["licenses"] == [{"license": {"id": "Apache-2.0"}}, {"license": {"id": "GPL-2.0-or-later"}},
                               {"license": {"name": "Artistic"}}]  # from the source's doc (symlink)
    assert by_name["tzdata"]["licenses"] == [{"license": {"name": sbom.SEE_COPYRIGHT}}]
    assert by_name["aiohttp"]["licenses"] == [{"expression": "Apache-2.0 AND MIT"}]
    assert by_name["PyNaCl"]["purl"] == "pkg:pypi/pynacl@1.6.2"
    assert by_name["PyNaCl"]["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert doc["metadata"]["component"] == {"type": "firmware", "bom-ref": "x0tta6bl4-x86_64",
                                            "name": "x0tta6bl4-x86_64", "version": "0.1.0-gabc"}
    again = sbom.document(make_root(tmp_path / "again"), "x86_64", "amd64", "0.1.0-gabc", 1700000000,
                          [("x0tta6bl4:debian:source", "deb http://deb.debian.org/debian bookworm main")])
    assert json.dumps(again, sort_keys=True) == json.dumps(doc, sort_keys=True)  # same inputs, same bytes


def test_document_is_valid_cyclonedx(tmp_path):
    doc = sbom.document(make_root(tmp_path), "x86_64", "amd64", "1", 0, [("x0tta6bl4:board", "x86_64")])
    assert sbom.schema_errors(doc) == []
    doc["components"][0]["licenses"] = [{"license": {"id": "Not-An-SPDX-Id"}}]  # the check can fail
    assert sbom.schema_errors(doc)


async def test_firmware_api_and_page(aiohttp_client, tmp_path, monkeypatch):
    fw_dir = tmp_path / "fw"
    doc = sbom.document(make_root(tmp_path), "x86_64", "amd64", "0.1.0-gabc", 0,
                        [("x0tta6bl4:board", "x86_64"), ("x0tta6bl4:debian:source", "deb http://x bookworm main")])
    sbom.write(doc, fw_dir / "sbom.cdx.json")
    monkeypatch.setattr(firmware, "FIRMWARE_DIR", fw_dir)
    c = await aiohttp_client(make_app(tmp_path))
    assert (await c.get("/api/v1/firmware")).status == 401  # a session like every API route
    await do_setup(c, tmp_path)
    r = await c.get("/api/v1/firmware")
    body = await r.json()
    assert r.status == 200 and body["version"] == "0.1.0-gabc" and body["board"] == "x86_64"
    assert body["counts"] == {"debian": 2, "python": 2, "other": 0}
    assert {"name": "aiohttp", "version": "3.14.5", "kind": "python", "licenses": ["Apache-2.0 AND MIT"]} \
        in body["components"]
    r = await c.get("/api/v1/firmware/sbom")
    assert r.status == 200 and json.loads(await r.read()) == doc
    assert (await c.get("/firmware")).status == 200
    (fw_dir / "sbom.cdx.json").write_text('{"bomFormat": "other"}')
    r = await c.get("/api/v1/firmware")
    assert r.status == 503 and "unusable" in (await r.json())["error"]
    monkeypatch.setattr(firmware, "FIRMWARE_DIR", tmp_path / "none")
    r = await c.get("/api/v1/firmware")
    assert r.status == 404 and "not running from a built image" in (await r.json())["error"]
