"""The web UI's per-device certificate: made once (first boot), fingerprint printed at every boot.

    python3 -I /usr/lib/x0tta6bl4/webcert.py --cert C --key K [--node-key /data/x0node/node.key]

Rules:
- A new ECDSA P-256 key and a self-signed X.509 certificate (cryptography, from x0node's pinned
  dependencies in /usr/lib/x0node) are made only when neither file exists; both existing are kept as
  they are; exactly one existing is an error (never overwrite half a pair).
- The key file is mode 0600 and both files are written durably: a temporary file in the same directory,
  fsync, rename, directory fsync. The certificate is written last, so a crash leaves either nothing or
  a key without a certificate, which is reported and left alone.
- Names: CN and DNS names `x0-<first 12 of the node id>` (the device's host name, with .local and .lan)
  and the mesh address as an IP name when the node key is there; otherwise CN `x0tta6bl4` only.
- Validity from NOT_BEFORE (a fixed past date: a router without a real-time clock may boot with any
  date) to 9999-12-31 23:59:59 UTC, the "no well-defined expiration" value of RFC 5280 section 4.1.2.5.
- Every run prints `x0tta6bl4 web UI certificate SHA-256 <AA:BB:...>` (SHA-256 over the DER
  certificate, the fingerprint browsers show) for the console; with the pair in place (a later boot, or
  a unit provisioned with it, image/provision.py) nothing but the standard library is loaded.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import ipaddress
import json
import os
import pathlib
import re
import subprocess
import sys

DEVICE_SITE = "/usr/lib/x0node"
NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
CONSOLE_PREFIX = "x0tta6bl4 web UI certificate SHA-256"


def _crypto():  # imported late: on the device from x0node's site directory
    if DEVICE_SITE not in sys.path and os.path.isdir(DEVICE_SITE):
        sys.path.insert(0, DEVICE_SITE)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    return x509, hashes, serialization, ec, NameOID


def write_durably(path: pathlib.Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def node_names(node_key: pathlib.Path | None) -> tuple[str | None, str | None]:
    """(host name, mesh address) of this node from `x0node keys show`, or (None, None)."""
    if node_key is None or not node_key.exists():
        return None, None
    try:
        out = subprocess.run(["/usr/bin/x0node", "keys", "show", "--key", str(node_key)],  # nosec B603 - fixed argv
                             capture_output=True, text=True, check=True, timeout=120).stdout
        info = json.loads(out)
        return f"x0-{str(info['node_id'])[:12]}", str(ipaddress.IPv6Address(info["mesh_address"]))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None, None


def make_pair(host: str | None, mesh_addr: str | None) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for a new self-signed certificate."""
    x509, hashes, serialization, ec, NameOID = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "x0tta6bl4"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x0tta6bl4 router")])
    alt: list = []
    if host:
        alt += [x509.DNSName(host), x509.DNSName(f"{host}.local"), x509.DNSName(f"{host}.lan")]
    if mesh_addr:
        alt.append(x509.IPAddress(ipaddress.IPv6Address(mesh_addr)))
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate as AA:BB:... (what browsers show). Standard library only: this runs
    at every boot, and loading the crypto library costs a slow or emulated board tens of seconds."""
    m = re.search(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", cert_pem[:65536], re.S)
    if m is None:
        raise ValueError("no PEM certificate in the certificate file")
    try:
        der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the certificate's PEM body is not base64: {exc}") from None
    return hashlib.sha256(der).digest().hex(":").upper()


def ensure(cert: pathlib.Path, key: pathlib.Path, node_key: pathlib.Path | None = None) -> tuple[str, bool]:
    """(fingerprint, made now). Raises RuntimeError when only one of the pair exists."""
    have_cert, have_key = cert.exists(), key.exists()
    if have_cert != have_key:
        raise RuntimeError(f"only one of {cert} and {key} exists; remove it to make a new pair")
    made = False
    if not have_cert:
        key_pem, cert_pem = make_pair(*node_names(node_key))
        write_durably(key, key_pem, 0o600)
        write_durably(cert, cert_pem, 0o644)
        made = True
    return fingerprint(cert.read_bytes()), made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the web UI's certificate once; print its fingerprint.")
    parser.add_argument("--cert", type=pathlib.Path, required=True)
    parser.add_argument("--key", type=pathlib.Path, required=True)
    parser.add_argument("--node-key", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        fp, made = ensure(args.cert, args.key, args.node_key)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"x0tta6bl4 web UI certificate: {exc}", file=sys.stderr)
        return 1
    print(f"{CONSOLE_PREFIX} {fp}" + (" (new)" if made else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
